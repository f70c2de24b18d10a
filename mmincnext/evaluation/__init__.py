"""Evaluation utilities (metrics); mmdet-dependent parts are imported only
when mmdet is installed."""
