"""pycocotools' COCOeval on the same boxes, as the reference for our matching and AP."""

from __future__ import annotations

import contextlib
import io

import numpy as np


def coco_eval(images: list[dict], num_classes: int):
    """Run COCOeval (bbox) on images [{gt_boxes, gt_labels, gt_crowd, pred_boxes,
    pred_labels, pred_scores}] (xyxy); returns the evaluated ``COCOeval``.

    Prediction ``k`` of image ``i`` gets annotation id ``i * 10000 + k + 1`` and ground
    truth ``g`` id ``i * 10000 + g + 1``, so matches map back to indices."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        x0, y0, x1, y1 = (float(v) for v in box)
        return [x0, y0, x1 - x0, y1 - y0]

    gt_anns, dt_anns = [], []
    for i, image in enumerate(images):
        crowd = image.get("gt_crowd")
        for g, (box, label) in enumerate(zip(image["gt_boxes"], image["gt_labels"])):
            b = xywh(box)
            gt_anns.append({"id": i * 10000 + g + 1, "image_id": i, "category_id": int(label),
                            "bbox": b, "area": b[2] * b[3],
                            "iscrowd": int(bool(crowd[g])) if crowd is not None else 0})
        for k, (box, label, score) in enumerate(
                zip(image["pred_boxes"], image["pred_labels"], image["pred_scores"])):
            dt_anns.append({"id": i * 10000 + k + 1, "image_id": i, "category_id": int(label),
                            "bbox": xywh(box), "score": float(score)})
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(len(images))], "annotations": gt_anns,
                  "categories": [{"id": c} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ids = [ann["id"] for ann in dt_anns]
        dt = gt.loadRes(dt_anns)
        # loadRes renumbers "id" 1..n: put ours back so matches name our indices.
        for ann, ours in zip(dt.dataset["annotations"], ids):
            ann["id"] = ours
        dt.createIndex()
        evaluation = COCOeval(gt, dt, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def coco_ap(evaluation) -> dict:
    """AP per class at IoU 0.5, its mean and mAP@[.5:.95] from an accumulated COCOeval
    (area all, 100 detections), as COCOeval.summarize reads them."""
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # T, R, K
    per_class = {}
    for k, cat in enumerate(evaluation.params.catIds):
        p = precision[0, :, k]
        if (p > -1).any():
            per_class[cat] = float(p[p > -1].mean())
    valid = precision[precision > -1]
    at50 = precision[0][precision[0] > -1]
    return {"ap50_per_class": per_class,
            "ap50": float(at50.mean()) if at50.size else None,
            "map": float(valid.mean()) if valid.size else None}


def coco_matches(evaluation, image_id: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{prediction index: (matched gt index per IoU threshold or -1, ignored per threshold)}
    of one image, as COCOeval recorded them (area all, max detections)."""
    out = {}
    for e in evaluation.evalImgs:
        if e is None or e["image_id"] != image_id or e["aRng"] != evaluation.params.areaRng[0]:
            continue
        for d, dt_id in enumerate(e["dtIds"]):
            gt_ids = e["dtMatches"][:, d].astype(np.int64)
            out[dt_id - image_id * 10000 - 1] = (
                np.where(gt_ids > 0, gt_ids - image_id * 10000 - 1, -1), e["dtIgnore"][:, d].astype(bool))
    return out
