#!/usr/bin/env python
"""``make demo``: train, evaluate and show a small-object detector on CPU.

1. generates the embedded small-object dataset if it is missing
   (``tools/dataset_converters/make_small_object_data.py``),
2. trains the demo config (Mask R-CNN on InceptionNeXt-atto, from scratch)
   with MMEngine's Runner and a progress display,
3. evaluates on the validation split with COCO metrics, standard and the
   fine small-object bins (``SmallObjectCocoMetric``), during and after
   training,
4. writes into the work dir:

   - ``metrics.json``: final validation metrics, their history, the loss
     history, timings and the data statistics,
   - ``vis/*.png``: predictions on validation images drawn by MMDetection's
     ``DetLocalVisualizer`` (left ground truth, right prediction: boxes,
     masks, labels and scores),
   - ``training_curves.png``: training loss and validation mAP over the
     iterations,
   - the checkpoint and MMEngine's full log,

and prints where they are and the validation bbox mAP.

Examples::

    python tools/demo.py                       # the full demo (make demo)
    python tools/demo.py --iters 40 --val-interval 20 --work-dir /tmp/d
"""
import argparse
import contextlib
import json
import logging
import math
import os
import os.path as osp
import sys
import time
import warnings

# deprecation noise of the pinned stack (setuptools<82, mmengine 0.10.7)
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(
    ROOT, 'configs', 'demo',
    'mask-rcnn_inceptionnext-atto_fpn_small-obj_demo.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Train, evaluate and visualise the small-object demo.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--data-root', default=osp.join(ROOT, 'data', 'demo'),
                   help='dataset folder; generated when missing')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    p.add_argument('--iters', type=int, default=None,
                   help='training iterations (default: the config\'s)')
    p.add_argument('--val-interval', type=int, default=None,
                   help='validate every N iterations (default: the '
                   'config\'s); the last iteration is always validated')
    p.add_argument('--batch-size', type=int, default=None,
                   help='training images per iteration (default: the '
                   'config\'s)')
    p.add_argument('--num-vis', type=int, default=6,
                   help='validation images to draw')
    p.add_argument('--vis-scale', type=float, default=2.0,
                   help='upscaling of the drawn pictures (small objects)')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='score threshold of the drawn predictions')
    p.add_argument('--threads', type=int, default=0,
                   help='torch CPU threads; 0: the cores not already busy '
                   '(by the 1-min load average; OMP_NUM_THREADS wins)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--regenerate', action='store_true',
                   help='regenerate the data even if it exists')
    p.add_argument('--verbose', action='store_true',
                   help='show MMEngine\'s full log on the console')
    return p.parse_args(argv)


# ------------------------------------------------------------------ data
def ensure_data(data_root, regenerate=False):
    """Generate the dataset unless it is there. A dataset written by the
    generator with non-default settings (e.g. by the tests) is kept only if
    it lives outside the default location; the default location always
    holds the default data, so the numbers of `make demo` are reproducible.
    """
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    import make_small_object_data as gen
    meta_file = osp.join(data_root, 'meta.json')
    meta = {}
    if osp.exists(meta_file):
        with open(meta_file) as f:
            meta = json.load(f)
    have = all(
        osp.exists(osp.join(data_root, 'det', 'annotations',
                            f'instances_{s}.json')) for s in ('train', 'val'))
    if have and not regenerate and osp.realpath(data_root) == osp.realpath(
            osp.join(ROOT, 'data', 'demo')):
        want = vars(gen.parse_args(['--out', data_root]))
        got = dict(meta.get('args', {}), out=data_root)
        got = {k: tuple(v) if isinstance(v, list) else v
               for k, v in got.items()}
        want = {k: tuple(v) if isinstance(v, list) else v
                for k, v in want.items()}
        have = got == want
    if regenerate or not have:
        print(f'[demo] generating the small-object dataset in {data_root}')
        gen.main(['--out', data_root])
        with open(meta_file) as f:
            meta = json.load(f)
    return meta.get('stats', {})


# ------------------------------------------------------------------ config
def build_cfg(args):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=args.seed)
    det_root = osp.join(args.data_root, 'det') + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = det_root
    for ev in ('val_evaluator', 'test_evaluator'):
        cfg[ev].ann_file = osp.join(det_root, 'annotations',
                                    'instances_val.json')
    if args.batch_size:
        cfg.train_dataloader.batch_size = args.batch_size
    iters = args.iters or cfg.train_cfg.max_iters
    val_interval = args.val_interval or cfg.train_cfg.val_interval
    set_schedule(cfg, iters, val_interval)
    return cfg


def set_schedule(cfg, iters, val_interval):
    """Rescale the iteration-based schedule (warm-up + decay) of the config
    to ``iters`` iterations."""
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = min(val_interval, iters)
    if iters != old:
        for s in cfg.param_scheduler:
            for key in ('begin', 'end', 'T_max'):
                if key in s and s[key] is not None:
                    s[key] = max(1, round(s[key] * iters / old)) \
                        if s[key] else 0
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.checkpoint.by_epoch = False
    cfg.default_hooks.logger.interval = max(1, min(
        cfg.default_hooks.logger.interval, iters // 5))
    cfg.log_processor.window_size = cfg.default_hooks.logger.interval


# ------------------------------------------------------------------ hook
def make_progress_hook(console):
    """The demo's hook: progress display and loss / metric history."""
    from mmengine.hooks import Hook

    class DemoProgressHook(Hook):
        priority = 'LOW'

        def __init__(self):
            self.iters, self.losses, self.val = [], [], []
            self.t_start = None
            self.val_time = 0.0
            self.progress = None
            self.tty = console.isatty()

        # -- display
        def _line(self, text):
            if self.progress is not None:
                self.progress.console.print(text, highlight=False)
            else:
                print(text, file=console, flush=True)

        def before_train(self, runner):
            self.max_iters = runner.max_iters
            self.t_start = time.time()
            if self.tty:
                from rich.console import Console
                from rich.progress import (BarColumn, MofNCompleteColumn,
                                           Progress, TextColumn,
                                           TimeElapsedColumn,
                                           TimeRemainingColumn)
                self.progress = Progress(
                    TextColumn('[bold]{task.description}'), BarColumn(),
                    MofNCompleteColumn(), TextColumn('{task.fields[info]}'),
                    TimeElapsedColumn(), TextColumn('eta'),
                    TimeRemainingColumn(),
                    console=Console(file=console), transient=False)
                self.progress.start()
                self.task = self.progress.add_task(
                    'train', total=self.max_iters, info='')
            self.next_report = 0

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            it = runner.iter + 1
            loss = outputs.get('loss', float('nan')) if outputs else \
                float('nan')
            loss = float(loss.detach() if hasattr(loss, 'detach') else loss)
            self.iters.append(it)
            self.losses.append(loss)
            window = self.losses[-20:]
            smooth = sum(window) / len(window)
            if self.progress is not None:
                self.progress.update(self.task, completed=it,
                                     info=f'loss {smooth:.3f}')
            elif it >= self.next_report or it == self.max_iters:
                el = time.time() - self.t_start
                eta = el / it * (self.max_iters - it)
                self._line(f'[demo] iter {it:>5}/{self.max_iters}  '
                           f'loss {smooth:.3f}  elapsed {_fmt(el)}  '
                           f'eta {_fmt(eta)}')
                self.next_report = it + max(1, self.max_iters // 20)

        def before_val_epoch(self, runner):
            self._t_val = time.time()
            if self.progress is not None:
                self.progress.update(self.task, description='val  ')

        def after_val_epoch(self, runner, metrics=None):
            self.val_time += time.time() - self._t_val
            if self.progress is not None:
                self.progress.update(self.task, description='train')
            if not metrics:
                return
            entry = dict(iter=runner.iter, **{
                k: float(v) for k, v in metrics.items()
                if isinstance(v, (int, float))})
            self.val.append(entry)
            self._line(f'[demo] val @ iter {runner.iter}: '
                       + summary(metrics))

        def after_train(self, runner):
            if self.progress is not None:
                self.progress.stop()
                self.progress = None
            self.train_time = time.time() - self.t_start

    return DemoProgressHook()


def summary(m):
    """One line of the key validation numbers."""
    def g(k):
        v = m.get(f'coco/{k}')
        return 'n/a' if v is None else f'{v:.3f}'
    text = (f'bbox mAP {g("bbox_mAP")} (AP50 {g("bbox_mAP_50")}, APs '
            f'{g("bbox_mAP_s")}, <8px {g("bbox_mAP_vtiny")}, 8-16px '
            f'{g("bbox_mAP_tiny")}, 16-32px {g("bbox_mAP_small")})')
    if 'coco/segm_mAP' in m:
        text += f', segm mAP {g("segm_mAP")}'
    return text


def _fmt(seconds):
    seconds = int(round(seconds))
    return f'{seconds // 60}m{seconds % 60:02d}s'


# ------------------------------------------------------------------ outputs
def draw_predictions(runner, out_dir, num, scale, score_thr):
    """Draw ``num`` validation images: ground truth beside prediction."""
    import mmcv
    import torch
    from mmdet.visualization import DetLocalVisualizer
    from mmengine.dataset import pseudo_collate

    os.makedirs(out_dir, exist_ok=True)
    dataset = runner.val_dataloader.dataset
    vis = DetLocalVisualizer(name='demo_vis', line_width=1, alpha=0.5)
    vis.dataset_meta = dataset.metainfo
    model = runner.model
    model.eval()
    paths = []
    for idx in range(min(num, len(dataset))):
        with torch.no_grad():
            sample = model.test_step(pseudo_collate([dataset[idx]]))[0]
        img = mmcv.imread(sample.img_path, channel_order='rgb')
        if scale != 1:
            img = mmcv.imrescale(img, scale, interpolation='nearest')
            rescale_sample(sample, scale)
        name = osp.splitext(osp.basename(sample.img_path))[0]
        out = osp.join(out_dir, f'{name}.png')
        vis.add_datasample(name, img, sample, draw_gt=True, draw_pred=True,
                           pred_score_thr=score_thr, out_file=out)
        paths.append(out)
    return paths


def rescale_sample(sample, scale):
    """Scale boxes and masks of a DetDataSample (ground truth and
    prediction) by ``scale`` for a larger drawing."""
    import torch
    import torch.nn.functional as F
    for key in ('gt_instances', 'pred_instances'):
        if key not in sample:
            continue
        inst = getattr(sample, key)
        if 'bboxes' in inst:
            inst.bboxes = inst.bboxes * scale
        if 'masks' in inst:
            masks = inst.masks
            if isinstance(masks, torch.Tensor):
                if len(masks):
                    inst.masks = F.interpolate(
                        masks[None].float(), scale_factor=scale,
                        mode='nearest')[0].bool()
            else:  # BitmapMasks / PolygonMasks
                h, w = masks.height, masks.width
                inst.masks = masks.resize(
                    (int(round(h * scale)), int(round(w * scale))))


def plot_curves(hook, out_file):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(hook.iters, hook.losses, color='tab:blue', alpha=0.25, lw=0.8,
            label='loss (per iteration)')
    k = max(1, len(hook.losses) // 40)
    if len(hook.losses) >= k:
        smooth = [sum(hook.losses[max(0, i - k + 1):i + 1]) /
                  len(hook.losses[max(0, i - k + 1):i + 1])
                  for i in range(len(hook.losses))]
        ax.plot(hook.iters, smooth, color='tab:blue', lw=1.8,
                label=f'loss ({k}-iteration mean)')
    ax.set_xlabel('iteration')
    ax.set_ylabel('training loss', color='tab:blue')
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    its = [v['iter'] for v in hook.val]
    for key, style, colour, label in (
            ('coco/bbox_mAP', 'o-', 'tab:red', 'val bbox mAP'),
            ('coco/segm_mAP', 's-', 'tab:orange', 'val segm mAP'),
            ('coco/bbox_mAP_s', 'x--', 'tab:green', 'val bbox APs (<32 px)'),
            ('coco/bbox_mAP_tiny', '^:', 'tab:purple',
             'val bbox AP 8-16 px')):
        ys = [v.get(key) for v in hook.val]
        if its and all(y is not None and y >= 0 for y in ys):
            ax2.plot(its, ys, style, color=colour, label=label)
    ax2.set_ylabel('validation mAP')
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc='upper center',
              fontsize=8, ncol=2)
    ax.set_title('InceptionNeXt-atto Mask R-CNN, small-object demo (CPU)')
    fig.tight_layout()
    fig.savefig(out_file)
    plt.close(fig)


# ------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    console = sys.stdout
    sys.path.insert(0, ROOT)
    data_stats = ensure_data(args.data_root, args.regenerate)
    val_stats = data_stats.get('val', {})
    if val_stats:
        print(f'[demo] data {args.data_root}: '
              f'{data_stats["train"]["images"]} train / '
              f'{val_stats["images"]} val images, '
              f'{100 * val_stats["frac_under_32"]:.0f}% of the val objects '
              f'< 32 px, {100 * val_stats["frac_under_16"]:.0f}% < 16 px')

    from mmengine.runner import Runner
    set_threads(args.threads)
    cfg = build_cfg(args)
    os.makedirs(args.work_dir, exist_ok=True)
    print(f'[demo] training {osp.relpath(args.config, ROOT)} from scratch '
          f'for {cfg.train_cfg.max_iters} iterations on '
          f'{_num_threads()} CPU threads, validating every '
          f'{cfg.train_cfg.val_interval}')

    # MMEngine's full log (warnings included) goes to the work dir; the
    # console shows the progress and errors (everything with --verbose).
    stdout_log = open(osp.join(args.work_dir, 'demo_stdout.log'), 'w')
    quiet = (contextlib.nullcontext() if args.verbose
             else contextlib.redirect_stdout(stdout_log))
    with quiet:
        runner = Runner.from_cfg(cfg)
    if not args.verbose:
        for h in runner.logger.handlers:
            if type(h) is logging.StreamHandler:
                h.setStream(console)
                h.setLevel(logging.ERROR)
    hook = make_progress_hook(console)
    runner.register_hook(hook)
    print(f'[demo] MMEngine log: {runner.log_dir}')
    with quiet:
        runner.train()
        vis_paths = draw_predictions(
            runner, osp.join(args.work_dir, 'vis'), args.num_vis,
            args.vis_scale, args.score_thr)
    stdout_log.close()

    final = hook.val[-1] if hook.val else {}
    curves = osp.join(args.work_dir, 'training_curves.png')
    plot_curves(hook, curves)
    ckpt = osp.join(args.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    total = time.time() - t0
    result = dict(
        config=osp.relpath(args.config, ROOT),
        checkpoint=ckpt,
        iters=cfg.train_cfg.max_iters,
        batch_size=cfg.train_dataloader.batch_size,
        threads=_num_threads(),
        time_s=dict(total=round(total, 1), train=round(hook.train_time, 1),
                    val=round(hook.val_time, 1)),
        val_metrics={k: v for k, v in final.items() if k != 'iter'},
        history=dict(
            train=dict(iter=hook.iters, loss=hook.losses),
            val=hook.val),
        data=dict(root=args.data_root, **data_stats),
        pictures=vis_paths,
        curves=curves)
    metrics_file = osp.join(args.work_dir, 'metrics.json')
    with open(metrics_file, 'w') as f:
        json.dump(result, f, indent=1)

    rel = lambda p: osp.relpath(p, os.getcwd())  # noqa: E731
    print(f'\n[demo] done in {_fmt(total)} (training {_fmt(hook.train_time)}'
          f', of which validation {_fmt(hook.val_time)})')
    print(f'[demo] validation ({val_stats.get("images", "?")} images, '
          f'{val_stats.get("objects", "?")} objects): {summary(final)}')
    print(f'[demo] val bbox mAP = {final.get("coco/bbox_mAP", math.nan):.3f}')
    print(f'  metrics     {rel(metrics_file)}')
    print(f'  pictures    {rel(osp.join(args.work_dir, "vis"))}/ '
          f'({len(vis_paths)} PNG, left ground truth, right prediction)')
    print(f'  curves      {rel(curves)}')
    print(f'  checkpoint  {rel(ckpt)}')
    print(f'  full log    {rel(runner.log_dir)}/')
    print('[demo] detect on your own images:\n'
          '  python tools/image_demo.py '
          f'{rel(osp.join(args.data_root, "det", "val"))} '
          f'{rel(args.config)} {rel(ckpt)} --out-dir '
          f'{rel(osp.join(args.work_dir, "image_demo"))}')
    large = osp.join(args.data_root, 'det', 'annotations',
                     'instances_large.json')
    if osp.exists(large):
        print('[demo] sliced inference on the big images (8-16 px objects):'
              f'\n  python tools/sliced_inference.py {rel(args.config)} '
              f'{rel(ckpt)} {rel(osp.join(args.data_root, "det", "large"))} '
              f'--ann-file {rel(large)} --patch-size 256 --out-dir '
              f'{rel(osp.join(args.work_dir, "sliced"))}')
    return result


def _num_threads():
    import torch
    return torch.get_num_threads()


def set_threads(n):
    """Intra-op threads of torch. On a shared machine more threads than
    free cores make every step many times slower (threads wait on each
    other), so the default takes only the idle cores."""
    import torch
    if n <= 0:
        if os.environ.get('OMP_NUM_THREADS'):
            return torch.get_num_threads()
        cores = os.cpu_count() or 1
        busy = os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0.0
        n = max(1, min(cores, int(round(cores - busy))))
    torch.set_num_threads(n)
    return n


if __name__ == '__main__':
    main()
