from .backbones import InceptionNeXt

__all__ = ['InceptionNeXt']
