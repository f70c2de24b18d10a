# VisDrone2019-DET as tools/dataset_converters/visdrone2coco.py writes it:
# `visdrone.{train,val,test}` merge into the dataloaders' datasets,
# `visdrone.evaluator` counts up to 500 detections per image. See ../README.md.
__data_root = 'data/VisDrone2019-DET/'
__metainfo = dict(
    classes=('pedestrian', 'people', 'bicycle', 'car', 'van', 'truck',
             'tricycle', 'awning-tricycle', 'bus', 'motor'))

visdrone = dict(
    num_classes=10,
    max_per_img=500,
    train=dict(
        type='CocoDataset',
        data_root=__data_root,
        metainfo=__metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='VisDrone2019-DET-train/images/')),
    val=dict(
        type='CocoDataset',
        data_root=__data_root,
        metainfo=__metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='VisDrone2019-DET-val/images/')),
    test=dict(
        type='CocoDataset',
        data_root=__data_root,
        metainfo=__metainfo,
        ann_file='annotations/test-dev.json',
        data_prefix=dict(img='VisDrone2019-DET-test-dev/images/')),
    # AP at 500 detections per image (VisDrone's crowds), fine bins too
    evaluator=dict(
        type='SmallObjectCocoMetric',
        ann_file=__data_root + 'annotations/val.json',
        metric='bbox',
        proposal_nums=(100, 300, 500),
        fine_max_dets=500),
    test_evaluator=dict(
        type='SmallObjectCocoMetric',
        ann_file=__data_root + 'annotations/test-dev.json',
        metric='bbox',
        proposal_nums=(100, 300, 500),
        fine_max_dets=500))
