"""Speed and peak memory of sliced evaluation through
:class:`~mmincnext.models.SlicedInferenceDetector`.

Three steps on the same detector (random weights, the config's test
pipeline with its ``Resize`` / ``Pad`` set to the window size, so windows go
in at their own resolution), run **interleaved in one process**
(round-robin, one call of each per round; ``--warmup`` rounds discarded,
median of ``--repeats``):

* ``wrapper``: ``SlicedInferenceDetector.test_step`` on the test loop's
  batch of one full image (``uint8`` CHW tensor and its data sample), what
  ``tools/test.py`` runs on a config whose model is the wrapper;
* ``tool``: the code path of ``tools/sliced_inference.py``'s ``sliced``
  mode before it used the wrapper, from ``mmincnext.apis``:
  ``detector_predictor`` + ``get_windows`` + ``predict_windows`` +
  ``merge_predictions`` on the image as ``mmcv.imread`` returns it;
* ``window batch``: the detector on ONE batch of ``--batch-size`` windows
  of ``--slice-size`` (``inference_detector_batched``): whole-image
  inference at the window size, the reference of the memory column.

The image is the demo generator's large image (``--image-size`` square,
300 objects of 8-16 px). Both sliced steps must return the same boxes; the
script checks it before timing.

Peak memory is the most one call holds above what was allocated before it:

* on GPU, ``torch.cuda.max_memory_allocated`` (CUDA caching allocator);
* on CPU, tensor memory from the profiler's allocation events (PyTorch's CPU
  allocator: the windows' tensors, activations, predictions) and, in its own
  column, NumPy memory (and Python objects) from ``tracemalloc`` in a
  second call (the crops, their resized copies, the full image's HWC
  copy). The two peaks may fall at different moments, so their sum
  (``peak MB``) bounds the combined peak from above. Neither counts
  allocator caches, the model weights or the input image.

Example (the README numbers)::

    python tools/analysis_tools/benchmark_sliced.py --image-size 2000 \\
        --slice-size 512 --batch-size 4 --repeats 5

Other processes on the machine change absolute numbers; the interleaving
keeps the ratios comparable. Report the command and date with the numbers.
"""
import argparse
import datetime
import importlib.util
import os.path as osp
import statistics
import sys
import tempfile
import tracemalloc

import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)

DEFAULT_CONFIG = osp.join(
    'configs', 'rtmdet',
    'rtmdet_inceptionnext-atto_pafpn-p2_small-obj_8xb32-300e_coco.py')
STEPS = ('wrapper', 'tool', 'window batch')


def load_script(name, path):
    """A tool script as a module (its timing helpers and the generator)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the interleaved timing and the allocator-level peak of benchmark.py
BENCH = load_script('_mmincnext_benchmark',
                    osp.join(ROOT, 'tools', 'analysis_tools',
                             'benchmark.py'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='detector config (its model and test pipeline)')
    parser.add_argument('--image-size', type=int, default=2000)
    parser.add_argument('--slice-size', type=int, default=512)
    parser.add_argument('--overlap-ratio', type=float, default=0.25)
    parser.add_argument('--batch-size', type=int, default=4,
                        help='windows per forward pass')
    parser.add_argument('--max-dets', type=int, default=1000)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--warmup', type=int, default=1,
                        help='rounds discarded before timing')
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed rounds; the median is reported')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: torch default)')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def build_detector(args):
    """The config's detector, random weights, windows at their own size."""
    from mmdet.apis import init_detector
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, args.config)
                          if not osp.isabs(args.config) else args.config)
    size = (args.slice_size, args.slice_size)
    for t in cfg.test_dataloader.dataset.pipeline:
        if t.type == 'Resize':
            t.scale = size
        if t.type == 'Pad':
            t.size = size
    cfg.model.backbone.init_cfg = None  # random weights, no download
    torch.manual_seed(args.seed)
    return init_detector(cfg, None, device=args.device)


def large_image(args, folder):
    """The demo generator's large image (BGR, as mmcv.imread reads it)."""
    import mmcv
    gen = load_script('_make_small_object_data',
                      osp.join(ROOT, 'tools', 'dataset_converters',
                               'make_small_object_data.py'))
    gen.main(['--out', folder, '--num-train', '0', '--num-val', '0',
              '--num-large', '1', '--large-size', str(args.image_size),
              '--large-objects', '300', '--num-seg-train', '0',
              '--num-seg-val', '0'])
    return mmcv.imread(osp.join(folder, 'det', 'large', 'large_00000.jpg'))


def build_steps(model, img, args):
    """The three steps (each returns its predictions)."""
    from mmdet.structures import DetDataSample
    from mmdet.utils import get_test_pipeline_cfg

    from mmincnext.apis import (detector_predictor, get_windows,
                                inference_detector_batched,
                                merge_predictions, predict_windows)
    from mmincnext.apis.sliced_inference import build_ndarray_test_pipeline
    from mmincnext.models import SlicedInferenceDetector

    pipeline = get_test_pipeline_cfg(model.cfg.copy())
    pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    wrapper = SlicedInferenceDetector(
        detector=model, slice_size=args.slice_size,
        overlap_ratio=args.overlap_ratio, window_pipeline=pipeline,
        batch_size=args.batch_size, max_per_img=args.max_dets)
    tensor = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    meta = dict(img_id=1, ori_shape=img.shape[:2], img_shape=img.shape[:2])

    def run_wrapper():
        batch = dict(inputs=[tensor],
                     data_samples=[DetDataSample(metainfo=meta)])
        return wrapper.test_step(batch)[0].pred_instances

    predict = detector_predictor(model)

    def run_tool():  # tools/sliced_inference.py, 'sliced' mode
        windows = get_windows(*img.shape[:2], args.slice_size,
                              args.overlap_ratio)
        tiles = predict_windows(img, predict, windows, args.batch_size, 2.)
        return merge_predictions([tiles], 0.5, False, args.max_dets)

    window_pipeline = build_ndarray_test_pipeline(model.cfg)
    windows = get_windows(*img.shape[:2], args.slice_size,
                          args.overlap_ratio)
    # the first forward pass of the sliced steps
    crops = [img[y1:y2, x1:x2] for x1, y1, x2, y2 in
             windows[:args.batch_size]]

    def run_window_batch():
        return inference_detector_batched(model, crops, window_pipeline)

    steps = dict(zip(STEPS, (run_wrapper, run_tool, run_window_batch)))
    return steps, len(windows)


def peak_memory(step, device):
    """(tensor bytes, NumPy bytes): the peaks one call of ``step`` holds
    above what was allocated before it (module docstring). Two calls:
    ``tracemalloc`` would also count the profiler's own event records."""
    tensors = BENCH.peak_memory(step, device)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        step()
        arrays = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return tensors, arrays


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_detector(args)
    with tempfile.TemporaryDirectory() as folder:
        img = large_image(args, folder)
    steps, num_windows = build_steps(model, img, args)

    new, old = steps['wrapper'](), steps['tool']()
    if not (torch.equal(new.bboxes, old.bboxes)
            and torch.equal(new.scores, old.scores)):
        raise RuntimeError('the wrapper and the tool path disagree')

    with torch.no_grad():
        times = BENCH.run_interleaved(steps, args.warmup, args.repeats,
                                      args.device)
        memory = {name: peak_memory(step, args.device)
                  for name, step in steps.items()}

    mb = 2.**-20
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    total = {name: sum(m) for name, m in memory.items()}
    tensor_col = 'peak CUDA MB' if args.device == 'cuda' else \
        'peak tensor MB'
    header = ['step', 'ms', 'x tool', tensor_col, 'peak NumPy MB',
              'peak MB', 'x window batch']
    lines = [[name, f'{ms[name]:.0f}', f"{ms[name] / ms['tool']:.2f}",
              f'{memory[name][0] * mb:.0f}', f'{memory[name][1] * mb:.0f}',
              f'{total[name] * mb:.0f}',
              f"{total[name] / total['window batch']:.2f}"]
             for name in STEPS]
    s = args.slice_size
    print(f'{datetime.date.today()}, {BENCH.device_name(args)}, torch '
          f'{torch.__version__}; {args.config}')
    print(f'{args.image_size}x{args.image_size} image, {num_windows} '
          f'windows of {s} px (overlap {args.overlap_ratio}), '
          f'{args.batch_size} per forward pass; window batch: '
          f'{args.batch_size} x {s} x {s}; ms: median of {args.repeats} '
          'interleaved rounds (per image; per batch for the window '
          'batch)')
    print(BENCH.markdown_table(header, lines, left_columns=1))
    return dict(ms=ms, memory=memory)


if __name__ == '__main__':
    main()
