# AI-TOD v2 (COCO JSON as released): `aitod.{train,val,test}` merge into the
# dataloaders' datasets, `aitod.evaluator` has AI-TOD's size bins (2-8, 8-16,
# 16-32, 32-64 px) and 1500 detections per image. See ../README.md.
__data_root = 'data/AI-TOD/'
__metainfo = dict(
    classes=('airplane', 'bridge', 'storage-tank', 'ship', 'swimming-pool',
             'vehicle', 'person', 'wind-mill'))
__bins = dict(vtiny=(2, 8), tiny=(8, 16), small=(16, 32), medium=(32, 64))

aitod = dict(
    num_classes=8,
    max_per_img=1500,
    train=dict(
        type='CocoDataset',
        data_root=__data_root,
        metainfo=__metainfo,
        ann_file='annotations/aitodv2_train.json',
        data_prefix=dict(img='train/images/')),
    val=dict(
        type='CocoDataset',
        data_root=__data_root,
        metainfo=__metainfo,
        ann_file='annotations/aitodv2_val.json',
        data_prefix=dict(img='val/images/')),
    test=dict(
        type='CocoDataset',
        data_root=__data_root,
        metainfo=__metainfo,
        ann_file='annotations/aitodv2_test.json',
        data_prefix=dict(img='test/images/')),
    evaluator=dict(
        type='SmallObjectCocoMetric',
        ann_file=__data_root + 'annotations/aitodv2_val.json',
        metric='bbox',
        proposal_nums=(100, 300, 1500),
        fine_bins=__bins,
        fine_max_dets=1500),
    test_evaluator=dict(
        type='SmallObjectCocoMetric',
        ann_file=__data_root + 'annotations/aitodv2_test.json',
        metric='bbox',
        proposal_nums=(100, 300, 1500),
        fine_bins=__bins,
        fine_max_dets=1500))
