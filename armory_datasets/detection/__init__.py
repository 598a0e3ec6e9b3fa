"""Object-level detection evaluation: COCO matching per image and COCO average precision.

Example:
    >>> from armory_datasets.detection import match_image
    >>> match_image([[0, 0, 2, 2]], [1], [0.9], [[0, 0, 2, 2]], [1]).counts()
    (1, 0, 0)
"""

from armory_datasets.detection.average_precision import AveragePrecision
from armory_datasets.detection.matching import COCO_IOU_THRESHOLDS, ImageMatch, match_image, match_images

__all__ = ["AveragePrecision", "COCO_IOU_THRESHOLDS", "ImageMatch", "match_image", "match_images"]
