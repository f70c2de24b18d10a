"""mmincnext.deployment.nms: the multi-class NMS op against a brute-force
greedy NMS, and its ONNX form (NonMaxSuppression) in ONNX Runtime and
OpenVINO against eager PyTorch."""
import numpy as np
import pytest
import torch

from mmincnext.deployment.nms import ONNX_TRANSLATIONS, select_top


def random_boxes(num, m, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, m, 2, generator=g) * 100
    wh = torch.rand(num, m, 2, generator=g) * 40 + 1
    return torch.cat([xy, xy + wh], -1)


def greedy_nms(boxes, scores, iou_thr, score_thr):
    """Textbook greedy NMS of one class, numpy: indices by score."""
    idx = [i for i in np.argsort(-scores, kind='stable')
           if scores[i] > score_thr]
    keep = []
    for i in idx:
        ok = True
        for j in keep:
            x1 = max(boxes[i, 0], boxes[j, 0])
            y1 = max(boxes[i, 1], boxes[j, 1])
            x2 = min(boxes[i, 2], boxes[j, 2])
            y2 = min(boxes[i, 3], boxes[j, 3])
            inter = max(x2 - x1, 0) * max(y2 - y1, 0)
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
            if inter / (area(boxes[i]) + area(boxes[j]) - inter) > iou_thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize('max_per_class', [100, 3])
def test_multiclass_nms_is_per_class_greedy_nms(max_per_class):
    boxes = random_boxes(2, 60, seed=0)
    scores = torch.rand(2, 4, 60, generator=torch.Generator().manual_seed(1))
    scores[1, 2] = 0  # a class without candidates
    keep = torch.ops.mmincnext.multiclass_nms(boxes, scores, max_per_class,
                                              0.4, 0.2)
    assert keep.dtype == torch.long and keep.shape[1] == 3
    got = {(b, c): [] for b in range(2) for c in range(4)}
    for b, c, i in keep.tolist():
        got[b, c].append(i)
    for (b, c), idx in got.items():
        want = greedy_nms(boxes[b].numpy(), scores[b, c].numpy(), 0.4, 0.2)
        assert sorted(idx) == sorted(want[:max_per_class]), (b, c)
    assert got[1, 2] == []


def test_select_top_is_batched_nms_then_best_k():
    """select_top == mmcv's batched_nms (class-aware) + [:K], per image."""
    from mmcv.ops import batched_nms
    boxes = random_boxes(2, 50, seed=2)
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(2, 3, 50, generator=g)
    scores[scores < 0.3] = 0  # non-candidates
    k = 20
    out_boxes, out_scores, out_labels = select_top(boxes, scores, 0.5, k)
    for b in range(2):
        cls, idx = torch.nonzero(scores[b], as_tuple=True)
        dets, keep = batched_nms(boxes[b, idx], scores[b, cls, idx], cls,
                                 dict(iou_threshold=0.5))
        keep = keep[:k]
        assert torch.equal(out_scores[b], dets[:k, -1])
        assert torch.equal(out_labels[b], cls[keep])
        assert torch.equal(out_boxes[b], boxes[b, idx[keep]])


def test_select_top_pads_unused_rows():
    boxes = random_boxes(1, 4, seed=4)
    scores = torch.zeros(1, 2, 4)
    scores[0, 1, 2] = 0.7
    out_boxes, out_scores, out_labels = select_top(boxes, scores, 0.5, 10)
    assert out_scores.shape == (1, 10) and out_boxes.shape == (1, 10, 4)
    assert out_scores[0, 0] == pytest.approx(0.7)
    assert out_labels[0, 0] == 1
    assert torch.equal(out_boxes[0, 0], boxes[0, 2])
    assert (out_scores[0, 1:] == 0).all() and (out_labels[0, 1:] == -1).all()
    assert (out_boxes[0, 1:] == 0).all()


class SelectTop(torch.nn.Module):
    def forward(self, boxes, scores):
        return select_top(boxes, scores, 0.5, 15)


@pytest.fixture(scope='module')
def select_top_onnx(tmp_path_factory):
    from torch.export import Dim
    path = str(tmp_path_factory.mktemp('nms') / 'select_top.onnx')
    boxes, scores = random_boxes(2, 30, seed=5), torch.rand(2, 3, 30)
    dyn = {'boxes': {0: Dim('n'), 1: Dim('m')},
           'scores': {0: Dim('n'), 2: Dim('m')}}
    program = torch.export.export(SelectTop(), (boxes, scores),
                                  dynamic_shapes=dyn, strict=False)
    torch.onnx.export(program, (boxes, scores), path, dynamo=True,
                      input_names=['boxes', 'scores'],
                      output_names=['b', 's', 'l'],
                      custom_translation_table=ONNX_TRANSLATIONS)
    return path


def run_runtime(path, runtime, feeds):
    if runtime == 'onnxruntime':
        import onnxruntime as ort
        return ort.InferenceSession(path).run(None, feeds)
    import openvino as ov
    compiled = ov.Core().compile_model(path, 'CPU',
                                       {'INFERENCE_PRECISION_HINT': 'f32'})
    res = compiled(feeds)
    return [res[o] for o in compiled.outputs]


@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
@pytest.mark.parametrize('m, zero', [(40, 0.5), (7, 0.0), (5, 1.0)],
                         ids=['some-zero', 'fewer-than-k', 'all-zero'])
def test_exported_select_top_matches_eager(select_top_onnx, runtime, m,
                                           zero):
    import onnx
    model = onnx.load(select_top_onnx)
    assert 'NonMaxSuppression' in {n.op_type for n in model.graph.node}
    boxes = random_boxes(3, m, seed=6)
    scores = torch.rand(3, 3, m, generator=torch.Generator().manual_seed(7))
    scores[scores < zero] = 0  # score 0: not a candidate
    want = [t.numpy() for t in SelectTop()(boxes, scores)]
    got = run_runtime(select_top_onnx, runtime,
                      {'boxes': boxes.numpy(), 'scores': scores.numpy()})
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=0)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=0)
