#!/usr/bin/env python
"""Export a detector (or its backbone / neck) to ONNX, end to end.

Single-stage detectors (RetinaNet, RTMDet, YOLOX, MMYOLO's YOLOv5 / YOLOv8)
are exported with normalisation, box decoding and NMS in the graph:

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out FILE.onnx \\
        [--input-size H W | --dynamic]

Input ``input``: float32 ``(N, 3, H, W)``, BGR 0-255 as MMDetection loads
images, resized and padded to ``H, W``. Outputs ``boxes (N, K, 4)`` (x1, y1,
x2, y2 in input pixels), ``scores (N, K)``, ``labels (N, K)`` (int64), K the
config's ``max_per_img``; unused rows have score 0. The batch size is always
dynamic; the size is fixed when the test pipeline pads to a fixed size
(RTMDet, YOLO: 640x640) or ``--input-size`` is given, dynamic otherwise.

``--part backbone`` / ``--part neck`` export the feature maps (``feat0``,
...) of any config, two-stage detectors included (their RoI heads are not
exported). Run the file with ``tools/deployment/onnx_inference.py``.
"""
import argparse
import os.path as osp
import sys
import time
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='MMDetection / MMYOLO config file')
    p.add_argument('checkpoint', help="checkpoint file ('none': the "
                   'initial weights, for trying the export)')
    p.add_argument('--out', required=True, help='the .onnx file to write')
    size = p.add_mutually_exclusive_group()
    size.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                      help='fixed input size (multiples of the largest '
                      'stride)')
    size.add_argument('--dynamic', action='store_true',
                      help='dynamic H and W (multiples of the largest '
                      'stride)')
    p.add_argument('--part', choices=('detector', 'neck', 'backbone'),
                   default='detector')
    p.add_argument('--max-per-img', type=int,
                   help="K, default the config's test_cfg.max_per_img")
    p.add_argument('--no-deploy', action='store_true',
                   help='keep the backbone BatchNorms unfolded')
    p.add_argument('--opset', type=int, default=18)
    p.add_argument('--verify', action='store_true',
                   help='run the file in ONNX Runtime on a random batch and '
                   'compare with PyTorch (the detector\'s rows after NMS '
                   'can differ where float32 rounding swaps near-equal '
                   'scores; --part neck or backbone compares the maps)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def sizes(model):
    """What dynamic sizes must be multiples of (the backbone's stride 32,
    or the data preprocessor's pad divisor), and an example size whose
    smallest feature map is at least 2 x 2 (a 1-sized map would be
    specialised by the tracer)."""
    divisor = max(32, int(getattr(model.data_preprocessor,
                                  'pad_size_divisor', 1) or 1))
    strides = [32]
    gen = getattr(getattr(model, 'bbox_head', None), 'prior_generator',
                  None)
    for s in getattr(gen, 'strides', []) or []:
        strides.append(int(s[0] if isinstance(s, (tuple, list)) else s))
    side = max(320, 2 * max(strides))
    side = -(-side // divisor) * divisor
    return divisor, (side, side + divisor)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, ROOT)
    import numpy as np
    import torch
    from mmengine.logging import print_log

    import mmincnext  # noqa: F401
    from mmincnext.deployment import (ExportableDetector, default_input_size,
                                      export_metadata, export_onnx,
                                      load_detector)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config {args.config} not found')
    ckpt = None if args.checkpoint.lower() == 'none' else args.checkpoint
    if ckpt is not None and not osp.isfile(ckpt):
        raise FileNotFoundError(f'checkpoint {ckpt} not found')
    cfg, model, classes, palette, sliced = load_detector(
        args.config, ckpt, args.cfg_options, deploy=not args.no_deploy)
    wrapper = ExportableDetector(model, part=args.part,
                                 max_per_img=args.max_per_img)
    divisor, example = sizes(model)
    if args.input_size:
        size = tuple(args.input_size)
    elif args.dynamic:
        size = None
    else:
        size = default_input_size(cfg, sliced)
    meta = export_metadata(cfg, wrapper, size, classes, sliced, palette)
    meta['size_divisor'] = max(meta['size_divisor'], divisor)
    t0 = time.perf_counter()
    export_onnx(wrapper, args.out, input_size=size, example_size=example,
                size_divisor=divisor, metadata=meta, opset=args.opset)
    shape = f'{size[0]}x{size[1]}' if size else \
        f'dynamic (multiples of {divisor})'
    print_log(f'{args.out}: {args.part}, input N x 3 x {shape}, outputs '
              f'{", ".join(wrapper.output_names)}'
              + (f', K = {wrapper.max_per_img}' if args.part == 'detector'
                 else '') + f' ({time.perf_counter() - t0:.1f} s)',
              'current')
    if args.verify:
        import onnxruntime as ort
        h, w = size or (divisor * 4, divisor * 5)
        x = torch.rand(2, 3, h, w) * 255
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(x)]
        sess = ort.InferenceSession(args.out,
                                    providers=['CPUExecutionProvider'])
        got = sess.run(None, {'input': x.numpy()})
        for name, a, b in zip(wrapper.output_names, ref, got):
            diff = float(np.abs(a.astype(np.float64) - b).max()) \
                if a.size else 0.
            print_log(f'verify {name}: max |PyTorch - ONNX Runtime| = '
                      f'{diff:.3g}', 'current')
    return args.out


if __name__ == '__main__':
    main()
