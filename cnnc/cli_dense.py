"""`cnnc eval` and `cnnc predict` for a spec whose output is a map: pixel accuracy and IoU, and
mask pictures. `cli_train` hands over here once the network is built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def eval_masks(args, network, part, norm) -> int:
    from cnnc.runtime import metrics
    from cnnc.runtime.segmentation import evaluate_masks

    loss, accuracy, confusion = evaluate_masks(network, part, norm, args.batch)
    figures = metrics.summary(confusion)
    names = list(part.classes)
    total = confusion.sum(1)
    per_class_accuracy = [
        float(confusion[i, i] / total[i]) if total[i] else None for i in range(len(names))
    ]
    if args.format == "json":
        report = {
            "images": len(part),
            "pixels": int(confusion.sum()),
            "loss": loss,
            **figures,
            "accuracy": accuracy,
            "classes": names,
            "per_class_accuracy": per_class_accuracy,
            "confusion": confusion.tolist(),
        }
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{part.name}: {len(part)} images, {int(confusion.sum()):,} pixels  loss {loss:.4f}  "
        f"pixel accuracy {accuracy:.4f}  mIoU {figures['mean_iou']:.4f}"
    )
    width = max(len(n) for n in names + ["class"])
    print(f"  {'class'.ljust(width)}     IoU  accuracy     pixels")
    for name, iou, acc, count in zip(
        names, figures["per_class_iou"], per_class_accuracy, total, strict=True
    ):
        iou_text = "     -" if iou is None else f"{iou:.4f}"
        acc_text = "       -" if acc is None else f"  {acc:.4f}"
        print(f"  {name.ljust(width)}  {iou_text}  {acc_text}  {int(count):>9,}")
    return 0


def predict_masks(args, scores: np.ndarray, images: np.ndarray, names) -> int:
    """Write NAME_mask.png (labels with the class colours as palette) and NAME_overlay.png
    for each image, beside it or into --out; print where, or per-class fractions as JSON."""
    from cnnc.runtime.segmentation import overlay, write_mask_png, write_rgb_png

    out_dir = Path(args.out) if getattr(args, "out", None) else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    k = scores.shape[1]
    names = list(names) if names else [str(i) for i in range(k)]
    results = []
    for path, image, score in zip(args.images, images, scores, strict=True):
        mask = score.argmax(axis=0).astype(np.uint8)
        folder = out_dir or Path(path).parent
        stem = Path(path).stem
        mask_path, overlay_path = folder / f"{stem}_mask.png", folder / f"{stem}_overlay.png"
        write_mask_png(mask_path, mask, k)
        write_rgb_png(overlay_path, overlay(image, mask, k))
        counts = np.bincount(mask.reshape(-1), minlength=k) / mask.size
        results.append(
            {
                "image": str(path),
                "mask": str(mask_path),
                "overlay": str(overlay_path),
                "size": list(mask.shape),
                "fractions": {name: float(f) for name, f in zip(names, counts, strict=True)},
            }
        )
    if args.format == "json":
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        shares = ", ".join(f"{n} {f:.3f}" for n, f in r["fractions"].items() if f > 0)
        print(f"{r['image']}: {r['mask']}, {r['overlay']}  ({shares})")
    return 0
