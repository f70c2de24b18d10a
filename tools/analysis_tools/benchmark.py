"""Speed benchmark: InceptionNeXt (ours) vs the official code vs ConvNeXt.

Runs the models **interleaved in one process** (round-robin, one step of
each model per round, so load from other processes hits every model alike),
discards ``--warmup`` rounds and reports the median of ``--repeats`` rounds.

Backbone mode (default) compares, at the same size (``--arch``):

* ``InceptionNeXt`` -- this package (channels-last internally);
* ``InceptionNeXt deploy`` -- the same after ``switch_to_deploy()`` (BN
  folded; inference only);
* ``InceptionNeXt unfused`` / ``InceptionNeXt deploy unfused`` -- both with
  ``cpu_kernels=False``: PyTorch's token mixer and oneDNN's (or MKL's)
  GEMMs everywhere instead of mmincnext's compiled kernels, in inference and
  (``unfused``) in the train step (not in the default list:
  ``--models ours unfused deploy deploy_unfused convnext``);
* ``InceptionNeXt official`` -- timm's ``inception_next_<arch>`` (the official
  code), loaded with the *same* weights; its four stage outputs are computed
  with ``forward_intermediates``;
* ``ConvNeXt`` -- ``mmpretrain.models.ConvNeXt`` (the backbone of mmdet's
  ConvNeXt configs), four outputs with their norms, as mmdet uses it;
* ``ConvNeXt (timm, conv_mlp)`` -- timm's ``convnext_<arch>`` with its MLP
  as 1x1 convs (``conv_mlp=True``: oneDNN on the CPU, the fastest ConvNeXt
  form where MKL's sgemm is slow), four stage outputs.

Modes: ``inference`` (``torch.no_grad``, eval mode) and ``train`` (one full
step: forward, a loss on the four outputs, backward, AdamW step, the fused
one for every model, as the configs use it). The table
gives img/s, the ratio to ConvNeXt in the same mode, the peak memory one step
allocates, parameters and FLOPs (mmengine's ``get_model_complexity_info``;
multiply-accumulates, the convention of the papers), and the fraction of the
machine's peak: ``2 * MACs * img/s`` (x3 for a train step) over the best rate
of large GEMMs in MKL, oneDNN and mmincnext's kernel (fp32) or oneDNN (bf16),
timed in the same interleaved rounds and printed as the limit rows under the
table (:func:`peak_steps`). ``--compile`` wraps every model in
``torch.compile``; on GPU cuDNN autotuning is on for every model.
``--precision bf16`` is ``--amp bf16``.

Breakdown mode (``--breakdown ours|deploy``) times the parts of our network
on the activations they see in a forward pass, interleaved with the whole
forward and the limit's GEMMs: the stem, each downsample, each stage's
token mixers (with the block norms) and each stage's MLPs (the inference path
with its fused epilogues and the residual sum), or each stage's blocks where
one kernel (``mmincnext.ops.metanext_block``) runs them. It prints ms per
batch, the share of the sum of the parts, MACs and the fraction of the
peak of every part: where the time goes. ``--breakdown train`` times the
forward and backward pass of the same parts in training mode (batch
statistics; the token mixers with the block norms, the MLPs with the
residual sums), each fed its activations and a fixed random output
gradient, for our network and for the same network with
``cpu_kernels=False`` (PyTorch's token mixer, oneDNN's or MKL's GEMMs) in
the same interleaved rounds: ms of each, the speed-up, the share of our sum
of the parts, and the whole backbone's forward and backward pass.

Detector mode (``--detector``) builds our Mask R-CNN InceptionNeXt-T config
and mmdet's own ``mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py``
(with mmpretrain's ConvNeXt), and times a train step (data preprocessor,
losses, backward, the configs' own optimizer) and inference on the same
random images with boxes and masks (mmdet's ``demo_mm_inputs``). On CPU the
``AmpOptimWrapper`` of the ConvNeXt config is replaced by ``OptimWrapper``.

YOLO mode (``--yolo``) builds MMYOLO's stock YOLOv8-s and YOLOv5-s configs
and our InceptionNeXt YOLOv8 / YOLOv5 configs (atto and T, P3-P5 and P2-P5,
and the P2 YOLOv8 with the InceptionNeXt neck; ``--yolo-models`` picks some)
and times inference (data preprocessor, network, box decoding and NMS with
the configs' test settings) on the same random images, with the parameters
and FLOPs of the whole detector (the network at the input size; decoding and
NMS are not counted). Inference only: the YOLO training steps need MMYOLO's
batch format (``yolov5_collate``). The weights are random, so few boxes pass
the 0.001 score threshold and NMS costs little.

Runtime mode (``--runtime torch inductor onnxruntime openvino``, with
``--precision fp32 bf16``) times inference of our deploy network and
ConvNeXt (mmpretrain) in PyTorch (eager; bf16 through ``torch.autocast``), in
``torch.compile`` with frozen weights (inductor's ``freezing``: weights folded
as constants and prepacked, compiled before the rounds), and exported to ONNX
(``torch.onnx.export(dynamo=True)``, the batch and size of the run) in
ONNX Runtime (fp32) and OpenVINO (fp32, or its bf16 inference precision on
CPUs that have it), all interleaved in the same rounds; ratios to ConvNeXt
in the same runtime and precision and to the same network in PyTorch fp32,
and the fraction of the peak of the precision.

Examples::

    # the default table: tiny, 224x224, batch 8, CPU, both modes
    python tools/analysis_tools/benchmark.py
    # detection resolution, channels-last for every model
    python tools/analysis_tools/benchmark.py --input-size 800 1216 \\
        --batch 1 --channels-last
    # GPU, bf16 autocast
    python tools/analysis_tools/benchmark.py --device cuda --amp bf16 \\
        --batch 64
    # PyTorch (eager, compiled) vs ONNX Runtime vs OpenVINO, fp32 and bf16
    python tools/analysis_tools/benchmark.py --runtime torch inductor \
        onnxruntime openvino --precision fp32 bf16
    # where the time of deploy inference goes
    python tools/analysis_tools/benchmark.py --breakdown deploy
    # Mask R-CNN, train step and inference
    python tools/analysis_tools/benchmark.py --detector --input-size 800 1216
    # YOLOv8-s / YOLOv5-s (MMYOLO) vs the InceptionNeXt YOLO configs; one
    # thread where another process keeps a core of a 2-core machine busy
    # (two-thread operators then wait for its time slices)
    python tools/analysis_tools/benchmark.py --yolo --input-size 640 \\
        --batch 1 --repeats 3 --warmup 1 --threads 1

Other processes on the machine change absolute numbers; the interleaving
keeps the ratios comparable. Report the command with the numbers.
"""
import argparse
import copy
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))

BACKBONE_MODELS = ('ours', 'deploy', 'unfused', 'deploy_unfused', 'official',
                   'convnext', 'convnext_timm')
DEFAULT_MODELS = ('ours', 'deploy', 'official', 'convnext', 'convnext_timm')
INFERENCE_ONLY = ('deploy', 'deploy_unfused')
# The limit row of the FMA loop: the CPU's FMA rate, above every GEMM's.
FMA_CEILING = 'mmincnext FMA loop'
DTYPE_NAMES = {torch.float32: 'fp32', torch.bfloat16: 'bf16',
               torch.float16: 'fp16'}
LABELS = {
    'ours': 'InceptionNeXt',
    'deploy': 'InceptionNeXt deploy',
    'unfused': 'InceptionNeXt unfused',
    'deploy_unfused': 'InceptionNeXt deploy unfused',
    'official': 'InceptionNeXt official (timm)',
    'convnext': 'ConvNeXt (mmpretrain)',
    'convnext_timm': 'ConvNeXt (timm, conv_mlp)',
    'det_ours': 'Mask R-CNN InceptionNeXt-T',
    'det_convnext': 'Mask R-CNN ConvNeXt-T (mmdet)',
}


def _yolo_models():
    """``--yolo`` models: name -> (label, config); MMYOLO's stock YOLOv8-s
    (the reference) and YOLOv5-s first, then our configs."""
    models = {
        'yolov8_s': ('YOLOv8-s (MMYOLO)', 'mmyolo::yolov8/'
                     'yolov8_s_syncbn_fast_8xb16-500e_coco.py'),
        'yolov5_s': ('YOLOv5-s (MMYOLO)', 'mmyolo::yolov5/'
                     'yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py'),
    }
    for algo, label, sched in (('yolov8', 'YOLOv8', '8xb16-500e'),
                               ('yolov5', 'YOLOv5', '8xb16-300e')):
        for size, token in (('atto', 'atto'), ('T', 't')):
            prefix = f'configs/{algo}/{algo}_inceptionnext-{token}'
            models[f'{algo}_{token}'] = (
                f'{label} InceptionNeXt-{size} P3-P5',
                f'{prefix}_{sched}_coco.py')
            models[f'{algo}_{token}_p2'] = (
                f'{label} InceptionNeXt-{size} P2-P5',
                f'{prefix}_pafpn-p2_small-obj_{sched}_coco.py')
    models['yolov8_t_p2_neck'] = (
        'YOLOv8 InceptionNeXt-T P2-P5, InceptionNeXt neck',
        'configs/yolov8/yolov8_inceptionnext-t_inception-pafpn-p2_'
        'small-obj_8xb16-500e_coco.py')
    return models


YOLO_MODELS = _yolo_models()
LABELS.update({name: label for name, (label, _) in YOLO_MODELS.items()})
OUR_DET_CONFIG = 'configs/mask_rcnn/mask-rcnn_inceptionnext-t_fpn_1x_coco.py'
MMDET_CONVNEXT_CONFIG = \
    'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='tiny',
                        help='InceptionNeXt size; ConvNeXt of the same name')
    parser.add_argument('--models', nargs='+', default=list(DEFAULT_MODELS),
                        choices=BACKBONE_MODELS)
    parser.add_argument('--modes', nargs='+', default=None,
                        choices=['inference', 'train'],
                        help='default: both; --yolo: inference')
    parser.add_argument('--input-size', type=int, nargs='+', default=[224],
                        help='H [W] of the input (default 224)')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last inputs and weights for every '
                        'model (ours computes in channels-last anyway)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--amp', default='none',
                        choices=['none', 'bf16', 'fp16'],
                        help='autocast dtype (fp16 on GPU only)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='rounds discarded before timing')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed rounds; the median is reported')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: torch default)')
    parser.add_argument('--compile', action='store_true',
                        help='wrap every model in torch.compile (compiled '
                        'during the warm-up rounds)')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip the FLOPs analysis (faster)')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help="glibc keeps freed memory for reuse, as in "
                        "tools/train.py and tools/test.py "
                        "(mmincnext.engine.keep_freed_memory; every model "
                        "of the run gets it)")
    parser.add_argument('--breakdown', choices=['ours', 'deploy', 'train'],
                        help='time the parts of our (or our deploy) network '
                        'in inference, or (train) their forward and '
                        'backward passes with and without the kernels, '
                        'instead of comparing models')
    parser.add_argument('--detector', action='store_true',
                        help='Mask R-CNN InceptionNeXt-T vs mmdet ConvNeXt-T')
    parser.add_argument('--det-config', default=OUR_DET_CONFIG)
    parser.add_argument('--yolo', action='store_true',
                        help='MMYOLO YOLOv8-s / YOLOv5-s vs the InceptionNeXt '
                        'YOLOv8 / YOLOv5 configs (inference)')
    parser.add_argument('--yolo-models', nargs='+', default=list(YOLO_MODELS),
                        choices=list(YOLO_MODELS),
                        help='with --yolo: the models to compare')
    parser.add_argument('--runtime', nargs='+',
                        choices=['torch', 'inductor', 'onnxruntime',
                                 'openvino'],
                        help='compare inference runtimes (see above)')
    parser.add_argument('--precision', nargs='+', default=None,
                        choices=['fp32', 'bf16'],
                        help='with --runtime: the precisions (default '
                        'fp32); otherwise one, the same as --amp none / '
                        'bf16')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.precision is not None and not args.runtime:
        if len(args.precision) != 1 or args.amp != 'none':
            parser.error('without --runtime, --precision takes one value '
                         'and replaces --amp (fp32: none, bf16: bf16)')
        args.amp = {'fp32': 'none', 'bf16': 'bf16'}[args.precision[0]]
    args.precision = args.precision or ['fp32']
    if args.runtime and (args.breakdown or args.detector or args.yolo or
                         args.compile or args.amp != 'none' or
                         args.device != 'cpu'):
        parser.error('--runtime compares CPU inference runtimes of the '
                     'backbones: no --breakdown, --detector, --yolo, '
                     '--compile, --amp or --device cuda (use --precision)')
    if args.runtime and '--models' not in (argv or sys.argv):
        args.models = ['deploy', 'convnext']
    if len(args.input_size) == 1:
        args.input_size = args.input_size * 2
    if len(args.input_size) != 2:
        parser.error('--input-size takes H or H W')
    if args.breakdown and (args.detector or args.yolo or args.compile):
        parser.error('--breakdown times eager backbone parts: it takes '
                     'neither --detector, --yolo nor --compile')
    if args.breakdown == 'train' and args.amp != 'none':
        parser.error('--breakdown train times float32 training (no --amp '
                     'or --precision bf16)')
    if args.detector and args.yolo:
        parser.error('--detector and --yolo are two separate comparisons')
    if args.yolo and args.compile:
        parser.error('--yolo times the eager detectors (no --compile)')
    if args.modes is None:
        args.modes = ['inference'] if args.yolo else ['inference', 'train']
    elif args.yolo and args.modes != ['inference']:
        parser.error('--yolo times inference only (--modes inference)')
    if args.amp == 'fp16' and args.device == 'cpu':
        parser.error('--amp fp16 needs --device cuda (use bf16 on CPU)')
    return args


# ----------------------------------------------------------------------
# timing helpers
def synchronize(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def autocast(args):
    if args.amp == 'none':
        return nullcontext()
    dtype = torch.bfloat16 if args.amp == 'bf16' else torch.float16
    return torch.autocast(args.device, dtype=dtype)


def peak_steps(args):
    """The large GEMMs whose best rate is the machine's measured peak, per
    dtype: ``{(dtype, GEMM): (step, flops)}``, timed in the same interleaved
    rounds as the models, so that the "% of peak" column compares rates
    measured under the same machine load.

    On CPU, in fp32: a square ``torch.mm`` (the BLAS: MKL on x86 wheels),
    the same GEMM as a 1x1 convolution (oneDNN) and, where built,
    mmincnext's ``fused_mlp`` kernel on a tiny stage-2 MLP (two GEMMs and a
    GELU); in bf16, where the CPU has it, ``torch.mm`` and the 1x1
    convolution in bf16 (both oneDNN). Which library is the fastest depends
    on the CPU (MKL's sgemm is slow on AMD), so the peak is the best of
    them. Beside them, where the kernels are built, the fp32 FMA loop
    (:data:`FMA_CEILING`, ``mmincnext.ops.kernels.fma_loop``): the rate no
    GEMM can pass, shown as the ceiling, not taken as the peak. On GPU: a
    square ``torch.mm`` in the ``--amp`` dtype (cuBLAS)."""
    steps = {}
    gen = torch.Generator(device=args.device).manual_seed(0)

    def randn(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=gen, device=args.device,
                           dtype=dtype)

    if args.device != 'cpu':
        size = 8192
        dtype = {'none': torch.float32, 'bf16': torch.bfloat16,
                 'fp16': torch.float16}[args.amp]
        a, b = randn(size, size, dtype=dtype), randn(size, size, dtype=dtype)
        steps[(DTYPE_NAMES[dtype], 'torch.mm')] = (
            lambda: torch.mm(a, b), 2 * size**3)
        return steps
    size = 2048
    dtypes = [torch.float32]
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        dtypes.append(torch.bfloat16)
    for dtype in dtypes:
        name = DTYPE_NAMES[dtype]
        a, b = randn(size, size, dtype=dtype), randn(size, size, dtype=dtype)
        steps[(name, 'torch.mm (BLAS)' if dtype == torch.float32 else
               'torch.mm (oneDNN)')] = (lambda a=a, b=b: torch.mm(a, b),
                                        2 * size**3)
        # the same GEMM: 2048 pixels x 2048 channels -> 2048 channels
        cl = torch.channels_last
        x = randn(1, size, 32, size // 32, dtype=dtype).contiguous(
            memory_format=cl)
        w = randn(size, size, 1, 1, dtype=dtype).contiguous(memory_format=cl)
        steps[(name, 'oneDNN 1x1 conv')] = (
            lambda x=x, w=w: torch.nn.functional.conv2d(x, w), 2 * size**3)
    from mmincnext.ops import cpu_kernels_available, fused_mlp
    from mmincnext.ops.kernels import fma_loop
    if cpu_kernels_available():
        rows, c, hidden = 4096, 384, 1536
        x, shortcut = randn(rows, c), randn(rows, c)
        w1, b1 = randn(hidden, c) * c**-0.5, randn(hidden)
        w2, b2 = randn(c, hidden) * hidden**-0.5, randn(c)
        steps[('fp32', 'mmincnext fused_mlp')] = (
            lambda: fused_mlp(x, shortcut, w1, b1, w2, b2),
            2 * 2 * rows * c * hidden)
        iterations = 5_000_000
        steps[('fp32', FMA_CEILING)] = (
            lambda: fma_loop(iterations),
            2 * fma_loop(1).numel() * iterations)
    return steps


def gemm_rates(steps, times):
    """``{(dtype, GEMM): GFLOP/s}``: the median rate of each
    :func:`peak_steps` GEMM, from their ``times``."""
    return {key: flops / statistics.median(times[key]) / 1e9
            for key, (_, flops) in steps.items()}


def peak_rates(rates):
    """``{dtype: (GFLOP/s, GEMM)}``: the best of the :func:`gemm_rates`
    per dtype (GEMMs only, not the FMA ceiling)."""
    peaks = {}
    for (dtype, gemm), rate in rates.items():
        if gemm != FMA_CEILING and rate > peaks.get(dtype, (0, None))[0]:
            peaks[dtype] = (rate, gemm)
    return peaks


def peak_lines(rates):
    """The limit rows under a table: each GEMM's rate (:func:`gemm_rates`),
    the peak marked."""
    peaks = peak_rates(rates)
    order = list(DTYPE_NAMES.values())
    lines = []
    for (dtype, gemm), rate in sorted(
            rates.items(), key=lambda item: order.index(item[0][0])):
        mark = (' (peak)' if peaks[dtype][1] == gemm else
                ' (ceiling)' if gemm == FMA_CEILING else '')
        lines.append([dtype, gemm, f'{rate:.0f}{mark}'])
    return markdown_table(['limit', 'GEMM', 'GFLOP/s'], lines,
                          left_columns=2)


def run_with_peaks(steps, peaks, args):
    """:func:`run_interleaved` of ``steps`` and the ``peaks`` GEMMs in the
    same rounds: (times of ``steps``, times of ``peaks``)."""
    times = run_interleaved(
        {**steps, **{key: step for key, (step, _) in peaks.items()}},
        args.warmup, args.repeats, args.device)
    return ({k: v for k, v in times.items() if k in steps},
            {k: times[k] for k in peaks})


def model_dtype(args):
    """The dtype whose peak a run's models are measured against."""
    return {'none': 'fp32', 'bf16': 'bf16', 'fp16': 'fp16'}[args.amp]


def peak_memory(step, device):
    """Peak bytes allocated during one call of ``step`` (above what was
    allocated before it): CUDA's allocator statistics on GPU, the profiler's
    allocation events on CPU."""
    if device == 'cuda':
        synchronize(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes())
                    for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


def run_interleaved(steps, warmup, repeats, device):
    """Call every step once per round; return seconds per call, per step."""
    times = {name: [] for name in steps}
    for round_idx in range(warmup + repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            if round_idx >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------
# backbones
class TimmFeatures(nn.Module):
    """timm's network as a backbone: its four stage outputs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return tuple(
            self.model.forward_intermediates(x, intermediates_only=True))


def build_backbones(args):
    from mmincnext.models import InceptionNeXt
    torch.manual_seed(args.seed)
    models = {}
    ours = InceptionNeXt(args.arch, out_indices=(0, 1, 2, 3))
    ours.init_weights()
    if 'ours' in args.models:
        models['ours'] = ours
    if 'deploy' in args.models:
        models['deploy'] = deployed(ours)
    if {'unfused', 'deploy_unfused'} & set(args.models):
        unfused = InceptionNeXt(args.arch, out_indices=(0, 1, 2, 3),
                                cpu_kernels=False)
        unfused.load_state_dict(ours.state_dict())
        if 'unfused' in args.models:
            models['unfused'] = unfused
        if 'deploy_unfused' in args.models:
            models['deploy_unfused'] = deployed(unfused)
    if 'official' in args.models:
        import timm
        official = timm.create_model(
            f'inception_next_{ours_arch_name(ours)}', pretrained=False)
        missing, unexpected = official.load_state_dict(
            ours.state_dict(), strict=False)
        assert not unexpected and all(k.startswith('head.') for k in missing)
        models['official'] = TimmFeatures(official)
    if 'convnext' in args.models:
        from mmpretrain.models import ConvNeXt
        models['convnext'] = ConvNeXt(
            ours_arch_name(ours), out_indices=(0, 1, 2, 3),
            gap_before_final_norm=False)
    if 'convnext_timm' in args.models:
        import timm
        models['convnext_timm'] = TimmFeatures(timm.create_model(
            f'convnext_{ours_arch_name(ours)}', pretrained=False,
            conv_mlp=True))
    for model in models.values():
        model.to(args.device)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
    return models


def deployed(model):
    """A copy of ``model`` in eval mode after ``switch_to_deploy()``."""
    model = copy.deepcopy(model).eval()
    model.switch_to_deploy()
    return model


def maybe_compile(fn, args):
    return torch.compile(fn) if args.compile else fn


def ours_arch_name(model):
    for name, setting in model.arch_settings.items():
        if tuple(setting['dims']) == model.arch['dims'] and \
                tuple(setting['depths']) == model.arch['depths']:
            return name
    raise ValueError('--arch must be a standard size to compare with timm '
                     'and ConvNeXt')


def backbone_steps(models, x, args, mode):
    steps = {}
    for name, model in models.items():
        if mode == 'inference':
            model.eval()

            def step(model=maybe_compile(model, args)):
                with torch.no_grad(), autocast(args):
                    model(x)
        else:
            if name in INFERENCE_ONLY:
                continue  # deploy: inference only
            model.train()
            # fused: one pass over the parameters (the configs' setting)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                          fused=True)

            def step(model=maybe_compile(model, args), optimizer=optimizer):
                with autocast(args):
                    loss = sum(o.float().pow(2).mean() for o in model(x))
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        steps[name] = step
    return steps


def complexity(model, x):
    """(MACs per image, params) from mmengine's analysis."""
    from mmengine.analysis import get_model_complexity_info
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('ERROR')  # unsupported-op notices (BN, GELU, add)
    model = copy.deepcopy(model)
    model.eval()  # (mmpretrain's ConvNeXt.train() returns None: no chaining)
    try:
        info = get_model_complexity_info(
            model, inputs=(x[:1],), show_table=False, show_arch=False)
    finally:
        logger.setLevel(level)
    # parameters the backbone uses (timm's network also holds its head)
    params = sum(p.numel() for n, p in model.named_parameters()
                 if not n.startswith('model.head.'))
    return info['flops'], params


# ----------------------------------------------------------------------
# breakdown of our network
def breakdown_parts(model, x, args):
    """``{part: (step, MACs per batch)}`` for the stem, each downsample and
    each stage's token mixers and MLPs of ``model`` (eval mode), every step
    fed the activations it sees in a forward pass of ``x``; and the same
    ``(step, MACs)`` for the whole forward."""
    from mmengine.analysis import FlopAnalyzer

    from mmincnext import ops
    analyzer = FlopAnalyzer(copy.deepcopy(model), inputs=(x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    macs = analyzer.by_module()

    def inference(fn):
        def step():
            with torch.no_grad(), autocast(args):
                fn()
        return step

    parts = {}
    with torch.no_grad(), autocast(args):
        parts['stem'] = (inference(lambda: model.stem(x)), macs['stem'])
        h = model.stem(x)
        for i, stage in enumerate(model.stages):
            if not isinstance(stage.downsample, nn.Identity):
                parts[f'stage {i} downsample'] = (
                    inference(lambda s=stage, t=h: s.downsample(t)),
                    macs[f'stages.{i}.downsample'])
                h = stage.downsample(h)
            inputs = []
            for block in stage.blocks:
                inputs.append(h)
                h = block(h)
            n = len(stage.blocks)
            names = [f'stages.{i}.blocks.{j}' for j in range(n)]
            mixer_macs = sum(macs[f'{b}.token_mixer'] + macs[f'{b}.norm']
                             for b in names)
            mlp_macs = sum(macs[f'{b}.mlp'] for b in names)
            if all(ops.inference_plan(block, t).whole
                   for block, t in zip(stage.blocks, inputs)):
                # mmincnext.ops.metanext_block: one kernel per block
                def blocks(blocks=stage.blocks, inputs=inputs):
                    for block, t in zip(blocks, inputs):
                        block(t)

                parts[f'stage {i} blocks ({n}, one kernel each)'] = (
                    inference(blocks), mixer_macs + mlp_macs)
                continue

            def mixers(blocks=stage.blocks, inputs=inputs):
                for block, t in zip(blocks, inputs):
                    ops.mixer_inference(block, t,
                                        ops.inference_plan(block, t).norm)

            mixed = [ops.mixer_inference(block, t,
                                         ops.inference_plan(block, t).norm)
                     for block, t in zip(stage.blocks, inputs)]

            def mlps(blocks=stage.blocks, inputs=inputs, mixed=mixed):
                for block, t, m in zip(blocks, inputs, mixed):
                    ops.mlp_inference(block, m, t)

            parts[f'stage {i} token mixers ({n})'] = (inference(mixers),
                                                      mixer_macs)
            parts[f'stage {i} MLPs ({n})'] = (inference(mlps), mlp_macs)
    return parts, (inference(lambda: model(x)), macs[''])


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out, )


def train_pass(module, fn, inputs, gen, input_grads=True):
    """A step of one forward and backward pass of ``fn(*ins)`` for each
    tuple ``ins`` of ``inputs``, against fixed random output gradients: the
    inputs are leaves that require grad where ``input_grads`` (as inside a
    network; not for the image), and ``module``'s gradients are reset first
    (as after ``zero_grad``)."""
    inputs = [tuple(t.detach().requires_grad_(input_grads) for t in ins)
              for ins in inputs]
    with torch.no_grad():
        grads = [tuple(
            torch.randn(o.shape, generator=gen, device=o.device).to(
                memory_format=torch.channels_last)
            for o in _as_tuple(fn(*ins))) for ins in inputs]

    def step():
        module.zero_grad(set_to_none=True)
        for ins, g in zip(inputs, grads):
            for t in ins:
                t.grad = None
            torch.autograd.backward(_as_tuple(fn(*ins)), g)
    return step


def train_breakdown_parts(model, x):
    """``{part: step}``: :func:`train_pass` of the stem, each downsample,
    each stage's token mixers (``forward_mixer``: with the block norms) and
    MLPs (``forward_mlp``: with the residual sums) of ``model`` (train
    mode), each fed the activations of a forward pass of ``x``; and of the
    whole backbone (``'whole backbone'``)."""
    gen = torch.Generator(device=x.device).manual_seed(0)
    parts = {'stem': train_pass(model.stem, model.stem, [(x, )], gen,
                                input_grads=False)}
    with torch.no_grad():
        h = model.stem(x)
    for i, stage in enumerate(model.stages):
        if not isinstance(stage.downsample, nn.Identity):
            parts[f'stage {i} downsample'] = train_pass(
                stage.downsample, stage.downsample, [(h, )], gen)
            with torch.no_grad():
                h = stage.downsample(h)
        inputs, mixed = [], []
        with torch.no_grad():
            for block in stage.blocks:
                inputs.append(h)
                mixed.append(block.forward_mixer(h))
                h = block.forward_mlp(mixed[-1], h)
        n = len(stage.blocks)
        for part, method, args in (
                (f'stage {i} token mixers ({n})', 'forward_mixer',
                 [(t, ) for t in inputs]),
                (f'stage {i} MLPs ({n})', 'forward_mlp',
                 list(zip(mixed, inputs)))):
            steps = [train_pass(block, getattr(block, method), [ins], gen)
                     for block, ins in zip(stage.blocks, args)]
            parts[part] = lambda steps=steps: [s() for s in steps]
    parts['whole backbone'] = train_pass(model, model, [(x, )], gen,
                                         input_grads=False)
    return parts


def run_train_breakdown(x, args):
    from mmincnext.models import InceptionNeXt
    torch.manual_seed(args.seed)
    ours = InceptionNeXt(args.arch).to(args.device)
    ours.init_weights()
    plain = InceptionNeXt(args.arch, cpu_kernels=False).to(args.device)
    plain.load_state_dict(ours.state_dict())
    models = {'kernels': ours.train(), 'plain': plain.train()}
    parts = {name: train_breakdown_parts(model, x)
             for name, model in models.items()}
    times = run_interleaved(
        {(part, name): step for name, steps in parts.items()
         for part, step in steps.items()}, args.warmup, args.repeats,
        args.device)
    ms = {key: statistics.median(t) * 1e3 for key, t in times.items()}
    names = [p for p in parts['kernels'] if p != 'whole backbone']
    for name in models:
        ms[('sum of the parts', name)] = sum(ms[(p, name)] for p in names)
    lines = []
    for part in names + ['sum of the parts', 'whole backbone']:
        ours_ms, plain_ms = ms[(part, 'kernels')], ms[(part, 'plain')]
        share = (f"{ours_ms / ms[('sum of the parts', 'kernels')] * 100:.1f}"
                 if part in names else '-')
        lines.append([part, f'{ours_ms:.2f}', f'{plain_ms:.2f}',
                      f'{plain_ms / ours_ms:.2f}', share])
    print(f'\n{args.arch} train-mode parts, forward + backward | input '
          f'{"x".join(map(str, x.shape))} | {device_name(args)} | torch '
          f'{torch.__version__} | freed memory kept '
          f'{args.keep_freed_memory} | median of {args.repeats} interleaved '
          f'rounds after {args.warmup} warm-up')
    print(markdown_table(
        ['part', 'ms', 'ms, cpu_kernels=False', 'speed-up', '% of time'],
        lines, left_columns=1))
    return lines


def run_breakdown(x, args):
    if args.breakdown == 'train':
        return run_train_breakdown(x, args)
    from mmincnext.models import InceptionNeXt
    torch.manual_seed(args.seed)
    model = InceptionNeXt(args.arch).to(args.device)
    model.init_weights()
    model.eval()
    if args.breakdown == 'deploy':
        model.switch_to_deploy()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    parts, (whole_step, whole_macs) = breakdown_parts(model, x, args)
    peaks = peak_steps(args)
    times, peak_times = run_with_peaks(
        {**{k: step for k, (step, _) in parts.items()},
         'whole forward': whole_step}, peaks, args)
    seconds = {k: statistics.median(v) for k, v in times.items()}
    gemms = gemm_rates(peaks, peak_times)
    rate = peak_rates(gemms)[model_dtype(args)][0] * 1e9
    whole_seconds = seconds.pop('whole forward')
    total = sum(seconds.values())

    def row(part, sec, macs, share):
        return dict(part=part, ms=sec * 1e3, share=share, macs=macs,
                    peak_frac=2 * macs / sec / rate)

    rows = [row(k, seconds[k], macs, seconds[k] / total)
            for k, (_, macs) in parts.items()]
    rows.append(row('sum of the parts', total,
                    sum(macs for _, macs in parts.values()), 1.))
    rows.append(row('whole forward', whole_seconds, whole_macs, None))
    header = ['part', 'ms', '% of time', 'MMACs', '% of peak']
    lines = [[r['part'], f"{r['ms']:.2f}",
              f"{r['share'] * 100:.1f}" if r['share'] is not None else '-',
              f"{r['macs'] / 1e6:.1f}", f"{r['peak_frac'] * 100:.0f}"]
             for r in rows]
    print(f'\n{args.arch} {args.breakdown} inference | input '
          f'{"x".join(map(str, x.shape))} | {device_name(args)} | torch '
          f'{torch.__version__} | amp {args.amp} | median of {args.repeats} '
          f'interleaved rounds after {args.warmup} warm-up')
    print(markdown_table(header, lines, left_columns=1))
    print('\n' + peak_lines(gemms))
    return rows


# ----------------------------------------------------------------------
# detectors
def build_detectors(args):
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    register_all_modules()
    init_default_scope('mmdet')
    import mmincnext  # noqa: F401  (registers InceptionNeXt)
    detectors = {}
    for name, path in (('det_ours', args.det_config),
                       ('det_convnext', MMDET_CONVNEXT_CONFIG)):
        cfg = get_config(path) if '::' in path else Config.fromfile(path)
        if cfg.get('custom_imports'):
            from mmengine.utils import import_modules_from_strings
            import_modules_from_strings(**cfg.custom_imports)
        cfg.model.backbone.pop('init_cfg', None)  # no downloads
        torch.manual_seed(args.seed)
        model = MODELS.build(cfg.model).to(args.device)
        model.init_weights()
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        if args.device == 'cpu' and optim_cfg.get('type') == \
                'AmpOptimWrapper':
            optim_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
            optim_cfg.pop('loss_scale', None)
        if args.amp != 'none' and args.device == 'cuda':
            optim_cfg.type = 'AmpOptimWrapper'
            optim_cfg.dtype = 'bfloat16' if args.amp == 'bf16' else \
                'float16'
        detectors[name] = (model, build_optim_wrapper(model, optim_cfg))
    return detectors


def detector_data(args, with_mask=True):
    from mmdet.testing import demo_mm_inputs
    h, w = args.input_size
    packed = demo_mm_inputs(batch_size=args.batch, image_shapes=[(3, h, w)],
                            num_items=[5] * args.batch, with_mask=with_mask)
    return packed


def detector_steps(detectors, data, args, mode):
    steps = {}
    for name, (model, optim_wrapper) in detectors.items():
        if mode == 'inference':
            model.eval()

            def step(model=model):
                with torch.no_grad(), autocast(args):
                    batch = model.data_preprocessor(copy.copy(data), False)
                    model(**batch, mode='predict')
        else:
            model.train()

            def step(model=model, optim_wrapper=optim_wrapper):
                with optim_wrapper.optim_context(model):
                    batch = model.data_preprocessor(copy.copy(data), True)
                    losses = model(**batch, mode='loss')
                loss, _ = model.parse_losses(losses)
                optim_wrapper.update_params(loss)
        steps[name] = step
    return steps


# ----------------------------------------------------------------------
# YOLO detectors (MMYOLO)
def build_yolos(args):
    """The ``--yolo-models`` as eval-mode detectors (BN instead of SyncBN,
    random weights), with their input normalisation and test settings."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmyolo')
    import mmincnext  # noqa: F401  (registers InceptionNeXt and the neck)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # the per-parameter init report
    models = {}
    try:
        for name in args.yolo_models:
            path = YOLO_MODELS[name][1]
            cfg = get_config(path) if '::' in path else Config.fromfile(path)
            cfg.model.backbone.pop('init_cfg', None)  # no downloads
            torch.manual_seed(args.seed)
            model = revert_sync_batchnorm(MODELS.build(cfg.model))
            model.init_weights()
            model.to(args.device).eval()
            if args.channels_last:
                model.to(memory_format=torch.channels_last)
            models[name] = model
    finally:
        logger.setLevel(level)
    return models


def yolo_steps(models, data, args):
    steps = {}
    for name, model in models.items():
        def step(model=model):
            with torch.no_grad(), autocast(args):
                batch = model.data_preprocessor(copy.copy(data), False)
                model(**batch, mode='predict')
        steps[name] = step
    return steps


def yolo_complexity(model, args):
    """(MACs per image, params) of the whole network (backbone, neck,
    head; ``mode='tensor'``) on one normalised input of the benchmark
    size."""
    h, w = args.input_size
    return complexity(model, torch.rand(1, 3, h, w, device=args.device))


# ----------------------------------------------------------------------
# ----------------------------------------------------------------------
# runtimes
def runtime_steps(models, x, args, tmp_dir):
    """``(model, runtime, precision) -> step`` for every combination the
    machine runs; ONNX Runtime has no bf16 CPU path for these graphs, and
    OpenVINO bf16 needs a CPU with bf16 instructions."""
    import numpy as np
    steps, skipped = {}, []
    feeds = x.numpy()
    threads = torch.get_num_threads()
    for name, model in models.items():
        model.eval()
        path = None
        for runtime in args.runtime:
            for precision in args.precision:
                key = (name, runtime, precision)
                if runtime in ('torch', 'inductor'):
                    amp = torch.autocast('cpu', dtype=torch.bfloat16) if \
                        precision == 'bf16' else nullcontext()
                    net = model if runtime == 'torch' else \
                        torch.compile(copy.deepcopy(model))

                    def step(model=net, amp=amp):
                        with torch.no_grad(), amp:
                            model(x)
                    if runtime == 'inductor':  # compile, weights frozen
                        from torch._inductor import config
                        with config.patch(freezing=True):
                            step()
                    steps[key] = step
                    continue
                if runtime == 'onnxruntime' and precision == 'bf16':
                    skipped.append(f'{LABELS[name]} onnxruntime bf16 (no bf16 '
                                   'CPU kernels)')
                    continue
                if path is None:
                    path = os.path.join(tmp_dir, f'{name}.onnx')
                    with torch.no_grad():
                        program = torch.export.export(model, (x, ),
                                                      strict=False)
                        torch.onnx.export(program, (x, ), path, dynamo=True,
                                          input_names=['input'])
                from mmincnext.deployment.runtime import create_session
                try:
                    run = create_session(path, runtime, precision, threads)
                except ValueError as err:
                    skipped.append(f'{LABELS[name]} {runtime} {precision} '
                                   f'({err})')
                    continue
                feed = np.ascontiguousarray(feeds)
                steps[key] = lambda run=run, feed=feed: run(feed)
    return steps, skipped


def run_runtimes(x, args):
    import tempfile
    models = build_backbones(args)
    macs = {name: None if args.no_flops else complexity(model, x)[0]
            for name, model in models.items()}
    peaks = peak_steps(args)
    with tempfile.TemporaryDirectory() as tmp:
        steps, skipped = runtime_steps(models, x, args, tmp)
        times, peak_times = run_with_peaks(steps, peaks, args)
    gemms = gemm_rates(peaks, peak_times)
    rates = peak_rates(gemms)
    med = {k: statistics.median(t) for k, t in times.items()}
    rows, lines = [], []
    for (name, runtime, precision), sec in med.items():
        peer = med.get(('convnext', runtime, precision))
        base = med.get((name, 'torch', 'fp32'))
        peak = rates.get(precision, (None, ))[0]
        frac = (2 * macs[name] * args.batch / sec / 1e9 / peak
                if macs[name] and peak else None)
        rows.append(dict(model=name, runtime=runtime, precision=precision,
                         seconds=sec, img_s=args.batch / sec,
                         x_convnext=peer / sec if peer else None,
                         x_torch=base / sec if base else None,
                         peak_frac=frac))
        lines.append([
            LABELS[name], runtime, precision, f'{sec * 1e3:.1f}',
            f'{args.batch / sec:.2f}',
            f'{peer / sec:.2f}' if peer else '-',
            f'{base / sec:.2f}' if base else '-',
            f'{frac * 100:.0f}' if frac else '-'])
    versions = [f'torch {torch.__version__}']
    for mod in ('onnxruntime', 'openvino'):
        if mod in args.runtime:
            versions.append(f'{mod} {__import__(mod).__version__}')
    h, w = x.shape[-2:]
    print(f'\n{args.arch} | input {args.batch}x3x{h}x{w} | '
          f'{device_name(args)} | {", ".join(versions)} | median of '
          f'{args.repeats} interleaved rounds after {args.warmup} warm-up')
    print(markdown_table(
        ['model', 'runtime', 'precision', 'ms/batch', 'img/s',
         f'x {LABELS["convnext"]}', 'x PyTorch fp32', '% of peak'], lines,
        left_columns=3))
    print('\n' + peak_lines(gemms))
    for note in skipped:
        print(f'not run: {note}')
    return rows


def markdown_table(header, lines, left_columns):
    """A markdown table; the first ``left_columns`` columns left-aligned,
    the others right-aligned."""
    lines = [header] + lines
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        out.append('| ' + ' | '.join(
            cell.ljust(w) if j < left_columns else cell.rjust(w)
            for j, (cell, w) in enumerate(zip(line, widths))) + ' |')
        if i == 0:
            out.append('|' + '|'.join(
                '-' * (w + 1) + (':' if j >= left_columns else '-')
                for j, w in enumerate(widths)) + '|')
    return '\n'.join(out)


def format_table(rows, reference):
    header = ['model', 'mode', 'img/s', f'x {LABELS[reference]}',
              'peak MB', 'params M', 'GMACs/img', '% of peak']
    lines = [[
        LABELS[row['model']], row['mode'], f"{row['img_s']:.2f}",
        f"{row['ratio']:.2f}" if row['ratio'] is not None else '-',
        f"{row['peak_mb']:.0f}",
        f"{row['params'] / 1e6:.2f}" if row['params'] else '-',
        f"{row['macs'] / 1e9:.2f}" if row['macs'] else '-',
        f"{row['peak_frac'] * 100:.0f}" if row['peak_frac'] else '-'
    ] for row in rows]
    return markdown_table(header, lines, left_columns=2)


def device_name(args):
    return (torch.cuda.get_device_name() if args.device == 'cuda' else
            f'{platform.processor() or platform.machine()}, '
            f'{torch.get_num_threads()} threads')


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        from mmincnext.engine import keep_freed_memory
        if not keep_freed_memory():
            raise SystemExit('--keep-freed-memory: glibc malloc settings '
                             'not applied (not glibc, or '
                             'MMINCNEXT_KEEP_FREED_MEMORY=0)')
    if args.device == 'cuda':
        # every model gets cuDNN's fastest algorithms (found in the warm-up)
        torch.backends.cudnn.benchmark = True
    h, w = args.input_size
    x = torch.randn(args.batch, 3, h, w, device=args.device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    if args.breakdown:
        return run_breakdown(x, args)
    if args.runtime:
        return run_runtimes(x, args)
    if args.yolo:
        models = build_yolos(args)
        data = detector_data(args, with_mask=False)
        reference = args.yolo_models[0]
        make_steps = lambda mode: yolo_steps(models, data, args)  # noqa
        info = {name: ((None, sum(p.numel() for p in m.parameters()))
                       if args.no_flops else yolo_complexity(m, args))
                for name, m in models.items()}
    elif args.detector:
        models = build_detectors(args)
        data = detector_data(args)
        reference = 'det_convnext'
        make_steps = lambda mode: detector_steps(models, data, args, mode)  # noqa
        info = {name: (None, sum(p.numel() for p in m.parameters()))
                for name, (m, _) in models.items()}
    else:
        models = build_backbones(args)
        reference = 'convnext'
        make_steps = lambda mode: backbone_steps(models, x, args, mode)  # noqa
        info = {name: ((None, None) if args.no_flops else
                       complexity(model, x))
                for name, model in models.items()}

    peaks = peak_steps(args)
    rows, peak_times = [], {key: [] for key in peaks}
    for mode in args.modes:
        steps = make_steps(mode)
        times, mode_peak_times = run_with_peaks(steps, peaks, args)
        for key, t in mode_peak_times.items():
            peak_times[key] += t
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name, step in steps.items():
            macs, params = info[name]
            rows.append(dict(
                model=name, mode=mode, img_s=args.batch / medians[name],
                seconds=times[name], peak_mb=peak_memory(step, args.device)
                / 2**20, params=params, macs=macs))
        for row in rows[-len(steps):]:
            row['ratio'] = (medians[reference] / medians[row['model']]
                            if reference in medians else None)
    gemms = gemm_rates(peaks, peak_times)
    rate = peak_rates(gemms)[model_dtype(args)][0]
    for row in rows:
        flops_per_img = 2 * row['macs'] * (3 if row['mode'] == 'train'
                                           else 1) if row['macs'] else None
        row['peak_frac'] = (flops_per_img * row['img_s'] / 1e9 / rate
                            if flops_per_img else None)

    title = 'YOLO (MMYOLO)' if args.yolo else \
        'Mask R-CNN' if args.detector else args.arch
    print(f'\n{title} | input '
          f'{args.batch}x3x{h}x{w} | {device_name(args)} | torch '
          f'{torch.__version__} | amp {args.amp} | channels_last '
          f'{args.channels_last} | compile {args.compile} | freed memory '
          f'kept {args.keep_freed_memory} | median of '
          f'{args.repeats} interleaved rounds after {args.warmup} warm-up')
    print(format_table(rows, reference))
    print('\n' + peak_lines(gemms))
    return rows


if __name__ == '__main__':
    main()
