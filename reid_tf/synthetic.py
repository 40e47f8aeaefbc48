"""A synthetic Market-1501: pedestrians whose appearance is the identity, under camera nuisances.

Each identity keeps its clothing colours and pattern, body proportions and accessory; each camera
brings its own background, illumination, colour cast, noise and blur; each image adds scale and
position jitter and sometimes an occluder. Deterministic by seed. A domain (`DOMAINS`) sets the
ranges its cameras are drawn from, their count, the resolution, and the clothing palette, and
draws a population of its own: a domain shift anyone can regenerate.
"""

from __future__ import annotations

import dataclasses
import os
import zlib

import numpy as np
from PIL import Image
from scipy import ndimage

from reid_tf.registry import Registry

_PATTERNS = ("solid", "hstripes", "vstripes", "checker")
_ACCESSORIES = ("none", "backpack", "bag", "hat")


@dataclasses.dataclass(frozen=True)
class Domain:
    """Where a domain's cameras and people are drawn from: each range (low, high) of a uniform draw,
    the camera count, the resolution the camera sees (then resized up), and the clothing palette
    (saturation about grey, and a brightness offset)."""

    name: str
    description: str
    background: tuple[float, float] = (40, 220)
    gain: tuple[float, float] = (0.65, 1.3)
    cast: tuple[float, float, float, float, float, float] = (0.8, 1.2, 0.8, 1.2, 0.8, 1.2)  # low, high per channel
    noise: tuple[float, float] = (3, 12)
    blur: tuple[float, float] = (0.3, 1.2)
    cameras: int = 6
    resolution: float = 1.0
    saturation: float = 1.0
    brightness: float = 0.0


DOMAINS: Registry[Domain] = Registry("synthetic domain", "--synthetic_domain")
for _domain in (
        Domain("default", "the generator as it has always been: indoor-like light, 6 cameras, full colour"),
        Domain("night", "dark, noisy and blue-cast low-light cameras, 4 of them, at half resolution",
               background=(10, 90), gain=(0.3, 0.6), cast=(0.7, 1.0, 0.8, 1.1, 1.0, 1.4), noise=(10, 25),
               blur=(0.8, 1.8), cameras=4, resolution=0.5),
        Domain("outdoor", "bright, warm-cast daylight over 8 cameras, summer clothing (light, saturated)",
               background=(60, 240), gain=(1.1, 1.6), cast=(1.0, 1.3, 0.9, 1.1, 0.7, 0.95), noise=(2, 6),
               blur=(0.2, 0.6), cameras=8, brightness=40.0),
        Domain("cctv", "low-resolution, blurred CCTV over 5 cameras, muted winter clothing", background=(70, 160),
               gain=(0.8, 1.1), noise=(6, 15), blur=(1.0, 2.0), cameras=5, resolution=0.35, saturation=0.45)):
    DOMAINS.register(_domain.name, _domain, help=_domain.description)


def _palette(rgb: np.ndarray, domain: Domain) -> np.ndarray:
    grey = rgb.mean()
    return np.clip(grey + domain.saturation * (rgb - grey) + domain.brightness, 0, 255)


def _clothed(ident: dict, domain: Domain) -> dict:
    """An identity's clothing in the domain's palette (the default's: as drawn)."""
    if domain.saturation == 1.0 and domain.brightness == 0.0:
        return ident
    return {**ident, **{k: _palette(ident[k], domain) for k in ("top", "top2", "bottom", "accessory_color")}}


def _identity(rng: np.random.Generator) -> dict:
    return {
        "top": rng.uniform(0, 255, 3),
        "top2": rng.uniform(0, 255, 3),
        "bottom": rng.uniform(0, 255, 3),
        "shoes": rng.uniform(0, 120, 3),
        "skin": np.array([230.0, 190.0, 160.0]) * rng.uniform(0.45, 1.0),
        "hair": rng.uniform(0, 110, 3),
        "pattern": _PATTERNS[rng.integers(len(_PATTERNS))],
        "period": rng.uniform(0.06, 0.14),
        "head": rng.uniform(0.055, 0.075),
        "torso": rng.uniform(0.28, 0.36),
        "width": rng.uniform(0.30, 0.44),
        "accessory": _ACCESSORIES[rng.integers(len(_ACCESSORIES))],
        "accessory_color": rng.uniform(0, 255, 3),
    }


def _camera(rng: np.random.Generator, domain: Domain = DOMAINS["default"]) -> dict:
    """One camera's nuisances, drawn from the domain's ranges (the same draws for every domain)."""
    cast = np.array(domain.cast).reshape(3, 2)
    return {
        "bg": rng.uniform(*domain.background, 3),
        "bg2": rng.uniform(*domain.background, 3),
        "gain": rng.uniform(*domain.gain),
        "cast": rng.uniform(cast[:, 0], cast[:, 1]),
        "noise": rng.uniform(*domain.noise),
        "blur": rng.uniform(*domain.blur),
        "resolution": domain.resolution,
    }


def draw_person(img: np.ndarray, y: np.ndarray, x: np.ndarray, ident: dict, rng: np.random.Generator,
                pose: dict | None = None) -> np.ndarray:
    """Paint an identity onto `img` (float [H, W, 3]; `y`, `x` its coordinates in [0, 1]) and return
    the mask of what was painted; `pose` (scale, cx, top, facing), else drawn from `rng`."""
    if pose is None:
        scale = rng.uniform(0.82, 1.0)
        pose = {"scale": scale, "cx": 0.5 + rng.uniform(-0.08, 0.08),
                "top": 0.04 + rng.uniform(0, 0.08) + (1 - scale) * 0.5, "facing": 1 if rng.random() < 0.5 else -1}
    scale, cx, top, facing = pose["scale"], pose["cx"], pose["top"], pose["facing"]
    height, width = y.shape
    head_r = ident["head"] * scale
    half_w = ident["width"] * scale / 2
    neck = top + 2 * head_r
    hip = neck + ident["torso"] * scale
    feet = min(top + 0.92 * scale, 0.99)

    def ellipse(cy, cxx, ry, rx):
        return ((y - cy) / ry) ** 2 + ((x - cxx) / rx) ** 2 <= 1

    body = (y >= neck) & (y < hip) & (np.abs(x - cx) < half_w)
    legs = (y >= hip) & (y < feet - 0.03) & (np.abs(x - cx) < half_w * 0.8)
    gap = (y >= hip + 0.05) & (np.abs(x - cx) < half_w * 0.12)
    shoes = (y >= feet - 0.03) & (y < feet) & (np.abs(x - cx) < half_w * 0.85) & ~gap
    head = ellipse(top + head_r, cx, head_r, head_r * 2.0 * (height / width) / 2.0)
    hair = head & (y < top + head_r * 0.8)

    pattern = ident["pattern"]
    period = ident["period"]
    if pattern == "hstripes":
        second = ((y - neck) / period).astype(int) % 2 == 1
    elif pattern == "vstripes":
        second = ((x - cx + 1) / (period * 0.6)).astype(int) % 2 == 1
    elif pattern == "checker":
        second = (((y - neck) / period).astype(int) + ((x - cx + 1) / (period * 0.6)).astype(int)) % 2 == 1
    else:
        second = np.zeros_like(body)
    mask = body | (legs & ~gap) | shoes | head
    img[body] = ident["top"]
    img[body & second] = ident["top2"]
    img[legs & ~gap] = ident["bottom"]
    img[shoes] = ident["shoes"]
    img[head] = ident["skin"]
    img[hair] = ident["hair"]

    acc = ident["accessory"]
    color = ident["accessory_color"]
    if acc == "backpack":
        side = cx - facing * half_w * 0.9
        part = (y > neck + 0.02) & (y < hip - 0.04) & (np.abs(x - side) < half_w * 0.35)
    elif acc == "bag":
        side = cx + facing * half_w * 1.05
        part = (y > hip - 0.1) & (y < hip + 0.06) & (np.abs(x - side) < half_w * 0.3)
    elif acc == "hat":
        part = (y > top - 0.01) & (y < top + head_r * 0.7) & (np.abs(x - cx) < head_r * 2.2)
    else:
        part = np.zeros_like(mask)
    img[part] = color
    return mask | part


def render_pedestrian(
    ident: dict, cam: dict, rng: np.random.Generator, height: int, width: int
) -> np.ndarray:
    """One uint8 [height, width, 3] image of an identity seen by a camera."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = yy / height, xx / width
    # Background: the camera's gradient with a few random blocks (other scene content).
    t = y[..., None]
    img = cam["bg"] * (1 - t) + cam["bg2"] * t + rng.normal(0, 10, 3)
    for _ in range(rng.integers(1, 4)):
        y0, x0 = rng.uniform(0, 1, 2)
        block = (y > y0) & (y < y0 + rng.uniform(0.1, 0.4)) & (x > x0) & (x < x0 + rng.uniform(0.1, 0.4))
        img[block] = rng.uniform(30, 230, 3)

    draw_person(img, y, x, ident, rng)

    if rng.random() < 0.3:  # partial occlusion by a scene object
        oy = rng.uniform(0.45, 0.85)
        side = rng.random() < 0.5
        ox = rng.uniform(0.15, 0.5)
        occ = (y > oy) & ((x < ox) if side else (x > 1 - ox))
        img[occ] = rng.uniform(30, 230, 3)

    img = img * cam["gain"] * cam["cast"]
    img = ndimage.gaussian_filter(img, sigma=(cam["blur"], cam["blur"], 0))
    img = img + rng.normal(0, cam["noise"], img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    resolution = cam.get("resolution", 1.0)
    if resolution != 1.0:  # what a camera of lower resolution sees, resized up to the crop's size
        small = Image.fromarray(img).resize((max(8, round(width * resolution)), max(8, round(height * resolution))),
                                            Image.BILINEAR)
        img = np.asarray(small.resize((width, height), Image.BILINEAR))
    return img


def _name(pid: int, cam: int, frame: int, idx: int) -> str:
    return f"{pid:04d}_c{cam}s1_{frame:06d}_{idx:02d}.jpg" if pid >= 0 else (
        f"-1_c{cam}s1_{frame:06d}_{idx:02d}.jpg"
    )


def make_synthetic_market(
    output_dir: str,
    num_ids: int = 200,
    num_cameras: int = 6,
    images_per_camera: int = 3,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
    num_junk: int = 20,
    num_distractors: int = 20,
    domain: str = "default",
) -> dict[str, int]:
    """Write a Market-1501-layout folder; half the identities train, half test.

    Every identity appears in 2..num_cameras cameras, `images_per_camera` images each. Test
    identities give one query per camera; the gallery also gets junk (-1) and distractor
    (0000) images. A domain other than the default has its own camera count and draws its own
    population (the seed and the domain's name seed it). Returns the number of images per split.
    """
    look = DOMAINS.lookup(domain)
    num_cameras = num_cameras if domain == "default" else look.cameras
    if num_ids < 2 or num_cameras < 2 or images_per_camera < 1:
        raise ValueError("need num_ids >= 2, num_cameras >= 2 and images_per_camera >= 1")
    rng = np.random.default_rng(seed if domain == "default" else [seed, zlib.crc32(domain.encode())])
    cameras = [_camera(rng, look) for _ in range(num_cameras)]
    pids = rng.permutation(np.arange(1, 2 * num_ids + 1))[:num_ids]
    train_pids = set(pids[: num_ids // 2 + num_ids % 2].tolist())
    dirs = {k: os.path.join(output_dir, k) for k in ("bounding_box_train", "query", "bounding_box_test")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    counts = dict.fromkeys(dirs, 0)
    frame = 0

    def save(split, pid, cam, img):
        nonlocal frame
        frame += 1
        Image.fromarray(img).save(os.path.join(dirs[split], _name(pid, cam + 1, frame, 1)), quality=92)
        counts[split] += 1

    for pid in sorted(pids.tolist()):
        ident = _clothed(_identity(rng), look)
        n_cams = rng.integers(2, num_cameras + 1)
        for cam in sorted(rng.choice(num_cameras, size=n_cams, replace=False).tolist()):
            for i in range(images_per_camera):
                img = render_pedestrian(ident, cameras[cam], rng, height, width)
                if pid in train_pids:
                    save("bounding_box_train", pid, cam, img)
                else:
                    save("query" if i == 0 else "bounding_box_test", pid, cam, img)
    for _ in range(num_distractors):  # distractors: people of no query identity
        cam = int(rng.integers(num_cameras))
        save("bounding_box_test", 0, cam, render_pedestrian(_clothed(_identity(rng), look), cameras[cam], rng, height,
                                                            width))
    for _ in range(num_junk):  # junk: badly cropped fragments
        cam = int(rng.integers(num_cameras))
        img = render_pedestrian(_clothed(_identity(rng), look), cameras[cam], rng, height, width)
        y0 = int(rng.integers(0, height // 2))
        img = np.array(Image.fromarray(img[y0 : y0 + height // 3]).resize((width, height)))
        save("bounding_box_test", -1, cam, img)
    return counts
