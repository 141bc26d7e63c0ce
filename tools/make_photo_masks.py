"""Draw the ground-truth object masks of the shipped test photographs once (run by hand, output committed).

Photographs are scikit-image's bundled sample data (in the wheel, no download). Writes
``test/data/photos/<photo>_<k>.png`` (uint8 0/255 masks, full photo size) and ``photos.json``.

- coffee (400x600): cup, saucer and spoon from hand-measured ellipses and polygons (pixel coordinates read
  off a gridded view of the photo; the saucer is its visible part, cup and spoon cut out).
- coins (303x384, grey): each coin a filled ellipse fitted to the contour of a hand-checked threshold
  (smoothed grey > local mean + 12, holes filled), one per coin; checked on overlay PNGs.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import skimage.data

OUT = Path(__file__).resolve().parents[1] / "test" / "data" / "photos"


def coffee():
    H, W = 400, 600
    cup = np.zeros((H, W), np.uint8)
    cv2.ellipse(cup, (290, 113), (118, 94), 0, 0, 360, 1, -1)  # rim, outer edge
    body = np.array([(173, 120), (178, 170), (190, 212), (215, 248), (250, 268), (290, 274), (330, 265),
                     (368, 240), (390, 213), (402, 175), (407, 120)], np.int32)
    cv2.fillPoly(cup, [body], 1)
    cv2.ellipse(cup, (226, 268), (30, 38), 0, 0, 360, 1, -1)  # handle
    spoon = np.zeros((H, W), np.uint8)
    cv2.fillPoly(spoon, [np.array([(400, 66), (423, 70), (412, 140), (396, 215), (384, 240), (372, 252),
                                   (360, 250), (376, 218), (389, 140)], np.int32)], 1)
    cv2.ellipse(spoon, (365, 283), (40, 43), 0, 0, 360, 1, -1)  # bowl
    spoon &= 1 - cup  # the spoon's handle passes behind the cup
    saucer = np.zeros((H, W), np.uint8)
    cv2.ellipse(saucer, (277, 228), (202, 162), 0, 0, 360, 1, -1)
    saucer &= (1 - cup) & (1 - spoon)
    return [("cup", cup, True), ("saucer", saucer, True), ("spoon", spoon, True)]


def coins():
    g = cv2.GaussianBlur(skimage.data.coins(), (5, 5), 0).astype(np.float32)
    fg = (g > cv2.blur(g, (61, 61)) + 12).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = []
    for c in sorted(contours, key=lambda c: (int(cv2.boundingRect(c)[1] / 70), cv2.boundingRect(c)[0])):
        if cv2.contourArea(c) < 400:
            continue
        m = np.zeros(g.shape, np.uint8)
        cv2.ellipse(m, cv2.fitEllipse(c), 1, -1)
        out.append((f"coin{len(out) + 1}", m, True))
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    index = {"source": "scikit-image 0.26 bundled sample data (skimage.data.<name>())", "photos": []}
    for name, objects in (("coffee", coffee()), ("coins", coins())):
        entry = {"name": name, "loader": f"skimage.data.{name}", "objects": []}
        for k, (obj, m, graspable) in enumerate(objects):
            f = f"{name}_{k}.png"
            cv2.imwrite(str(OUT / f), m * 255, [cv2.IMWRITE_PNG_COMPRESSION, 9, cv2.IMWRITE_PNG_BILEVEL, 1])
            entry["objects"].append({"name": obj, "mask": f, "obvious_graspable": graspable})
        index["photos"].append(entry)
    (OUT / "photos.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
