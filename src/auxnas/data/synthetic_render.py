"""Procedural multi-task indoor scenes, ray cast in vectorised NumPy: the renderer of the built-in default dataset
(``auxnas.data.synthetic`` caches and serves them).

Each image is a box room (floor, walls, ceiling) seen from a random pinhole camera,
with 1-6 objects of six classes (cabinet, table, ball, pillar, ottoman, vase: boxes,
spheres, cylinders and ellipsoids of class-dependent but overlapping sizes, colours
and textures), a random point light, ambient light and sensor noise. The labels come
from the same geometry:

* ``seg``: 9 classes (``SEG_CLASSES``); 255 (``IGNORE_INDEX``) on windows, where the
  "sensor" has no depth and the label is undefined.
* ``depth``: z-depth along the optical axis in metres; 0 where invalid (windows).
* ``disparity``: ``DISPARITY_SCALE / depth`` (a rectified stereo pair with fixed
  focal length x baseline); 0 where invalid.
* ``normal``: unit surface normals in the camera frame (x right, y down, z forward),
  facing the camera; the zero vector where invalid.
* ``object``: class of the object covering most pixels; ``scene``: the room type,
  which sets the room size, the wall palette and the prior over object classes.
* ``layout``: ``seg`` in 4 coarse classes (``LAYOUT_CLASSES``: floor, wall, ceiling, and
  every furniture class as object), 255 where ``seg`` is; derived when the scenes are
  loaded (``layout_labels``), not stored in the cache.

Camera: pixel ``(r, c)`` of an ``S x S`` image looks along
``(u * tan(fov/2), v * tan(fov/2), 1)`` with ``u = (2c + 1) / S - 1`` and
``v = (2r + 1) / S - 1`` (see ``intrinsics``); ``fov`` is stored per image.

Every image is a pure function of ``(seed, split, index)``: any range of indices can
be generated alone and matches the same indices generated in a larger batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

SEG_CLASSES = ("floor", "wall", "ceiling", "cabinet", "table", "ball", "pillar", "ottoman", "vase")
OBJECT_CLASSES = SEG_CLASSES[3:]
#: the coarse classes of ``layout``: the room's surfaces, and every object class as one
LAYOUT_CLASSES = ("floor", "wall", "ceiling", "object")
SCENE_CLASSES = ("bedroom", "kitchen", "office", "living_room", "storage")
IGNORE_INDEX = 255
DISPARITY_SCALE = 1.0
SPLITS = {"train": 0, "test": 1}

# per scene type: room width/depth range (m), room height range, wall base colour, prior over OBJECT_CLASSES
_SCENES = (
    ((3.0, 4.5), (2.4, 2.8), (0.75, 0.70, 0.80), (0.30, 0.10, 0.15, 0.05, 0.25, 0.15)),
    ((2.5, 4.0), (2.3, 2.7), (0.85, 0.85, 0.75), (0.35, 0.30, 0.05, 0.10, 0.05, 0.15)),
    ((3.5, 6.0), (2.6, 3.2), (0.70, 0.75, 0.75), (0.25, 0.30, 0.05, 0.20, 0.10, 0.10)),
    ((4.0, 7.0), (2.6, 3.4), (0.80, 0.72, 0.62), (0.10, 0.20, 0.15, 0.10, 0.30, 0.15)),
    ((4.0, 8.0), (3.0, 4.0), (0.62, 0.62, 0.60), (0.30, 0.05, 0.20, 0.30, 0.10, 0.05)),
)
# per seg class: mean albedo (overlapping between classes on purpose)
_ALBEDO = (
    (0.55, 0.42, 0.30), (0.75, 0.72, 0.70), (0.88, 0.88, 0.86), (0.55, 0.40, 0.28), (0.60, 0.45, 0.30),
    (0.70, 0.35, 0.30), (0.62, 0.60, 0.58), (0.45, 0.38, 0.55), (0.50, 0.55, 0.65),
)
_EPS = 1e-4


def layout_labels(seg: np.ndarray) -> np.ndarray:
    """``seg`` labels (any shape, uint8) in ``LAYOUT_CLASSES``: floor, wall and ceiling keep their class, every
    object class becomes ``object``, ``IGNORE_INDEX`` stays."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for c, name in enumerate(SEG_CLASSES):
        table[c] = LAYOUT_CLASSES.index(name if name in LAYOUT_CLASSES else "object")
    return table[seg]


def intrinsics(fov_deg: float, image_size: int) -> tuple[float, float]:
    """Focal length and principal point (pixels) of the square pinhole camera: ``(f, c)`` with ``fx = fy = f``."""
    f = (image_size / 2) / math.tan(math.radians(fov_deg) / 2)
    return f, (image_size - 1) / 2


def _ray_box(o: np.ndarray, d: np.ndarray, centre: np.ndarray, half: np.ndarray, yaw: float):
    """Hit distance and world normal of rays against a box rotated by ``yaw`` about the vertical axis."""
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # local -> world
    lo, ld = (o - centre) @ rot, d @ rot
    ld = np.where(np.abs(ld) < 1e-9, 1e-9, ld)
    t1, t2 = (-half - lo) / ld, (half - lo) / ld
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_in, t_out = near.max(axis=1), far.min(axis=1)
    hit = (t_in <= t_out) & (t_in > _EPS)
    axis = near.argmax(axis=1)
    local_n = np.zeros_like(ld)
    local_n[np.arange(len(ld)), axis] = -np.sign(ld[np.arange(len(ld)), axis])
    return np.where(hit, t_in, np.inf), local_n @ rot.T, lo + t_in[:, None] * ld


def _ray_ellipsoid(o: np.ndarray, d: np.ndarray, centre: np.ndarray, radii: np.ndarray):
    """Hit distance and world normal of rays against an axis-aligned ellipsoid (a sphere when radii are equal)."""
    lo, ld = (o - centre) / radii, d / radii
    a = (ld * ld).sum(1)
    b = 2 * (lo * ld).sum(1)
    c = (lo * lo).sum(1) - 1
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    hit = (disc > 0) & (t > _EPS)
    p = lo + t[:, None] * ld
    n = p / radii
    return np.where(hit, t, np.inf), n / np.linalg.norm(n, axis=1, keepdims=True).clip(1e-9), p


def _ray_cylinder(o: np.ndarray, d: np.ndarray, base: np.ndarray, radius: float, height: float):
    """Hit distance and world normal of rays against a vertical capped cylinder standing at ``base``."""
    lo = o - base
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (lo[:, 0] * d[:, 0] + lo[:, 2] * d[:, 2])
    c = lo[:, 0] ** 2 + lo[:, 2] ** 2 - radius**2
    disc = b * b - 4 * a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * np.maximum(a, 1e-12))
    y_side = lo[:, 1] + t_side * d[:, 1]
    side = (disc > 0) & (t_side > _EPS) & (y_side >= 0) & (y_side <= height)
    dy = np.where(np.abs(d[:, 1]) < 1e-9, 1e-9, d[:, 1])
    t_top = (height - lo[:, 1]) / dy
    ptop = lo + t_top[:, None] * d
    top = (t_top > _EPS) & (ptop[:, 0] ** 2 + ptop[:, 2] ** 2 <= radius**2)
    t = np.where(side, t_side, np.inf)
    t = np.where(top & (t_top < t), t_top, t)
    p = lo + np.where(np.isfinite(t), t, 0)[:, None] * d
    n = np.stack([p[:, 0], np.zeros_like(t), p[:, 2]], 1) / radius
    n = np.where((top & (t == t_top))[:, None], np.array([0.0, 1.0, 0.0]), n)
    return t, n, p


def _texture(rng: np.random.Generator, local: np.ndarray) -> np.ndarray:
    """A random stripe / checker / wave pattern in [0, 1] over local surface coordinates."""
    kind = rng.integers(3)
    freq = rng.uniform(2.0, 9.0)
    axes = rng.permutation(3)[:2]
    u, v = local[:, axes[0]] * freq, local[:, axes[1]] * freq
    if kind == 0:
        return 0.5 + 0.5 * np.sin(u + rng.uniform(0, 6.3))
    if kind == 1:
        return ((np.floor(u) + np.floor(v)) % 2).astype(np.float64)
    return 0.5 + 0.25 * np.sin(u + 2 * np.sin(v)) + 0.25 * np.sin(1.7 * v)


def _place_objects(rng: np.random.Generator, room: np.ndarray, cam: np.ndarray, yaw: float, fov: float,
                   prior: Sequence[float]) -> list[tuple]:
    """Random objects on the floor, preferably in front of the camera, not overlapping."""
    objects: list[tuple] = []
    footprints: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(1, 7))):
        cls = int(rng.choice(len(OBJECT_CLASSES), p=prior))
        for _attempt in range(12):
            angle = yaw + rng.uniform(-0.6, 0.6) * math.radians(fov)
            dist = rng.uniform(1.2, 4.5)
            x, z = cam[0] + dist * math.sin(angle), cam[2] + dist * math.cos(angle)
            if cls == 0:  # cabinet: tall box
                half = np.array([rng.uniform(0.2, 0.45), rng.uniform(0.4, 0.9), rng.uniform(0.15, 0.35)])
            elif cls == 1:  # table: wide low box
                half = np.array([rng.uniform(0.35, 0.75), rng.uniform(0.18, 0.4), rng.uniform(0.3, 0.5)])
            elif cls == 2:  # ball
                half = np.full(3, rng.uniform(0.1, 0.35))
            elif cls == 3:  # pillar: tall thin cylinder
                r = rng.uniform(0.08, 0.22)
                half = np.array([r, rng.uniform(0.6, room[1] / 2), r])
            elif cls == 4:  # ottoman: short wide cylinder
                r = rng.uniform(0.25, 0.5)
                half = np.array([r, rng.uniform(0.15, 0.28), r])
            else:  # vase: ellipsoid
                r = rng.uniform(0.1, 0.22)
                half = np.array([r, rng.uniform(0.2, 0.45), r])
            radius = float(np.hypot(half[0], half[2]))
            inside = radius < x < room[0] - radius and radius < z < room[2] - radius
            clear = all(math.hypot(x - fx, z - fz) > radius + fr for fx, fz, fr in footprints)
            if inside and clear and math.hypot(x - cam[0], z - cam[2]) > radius + 0.5:
                footprints.append((x, z, radius))
                objects.append((cls, np.array([x, half[1], z]), half, rng.uniform(0, math.pi)))
                break
    return objects


def _render(rng: np.random.Generator, size: int) -> dict[str, np.ndarray] | None:
    """One scene; None when no object is visible (the caller draws again)."""
    scene = int(rng.integers(len(SCENE_CLASSES)))
    (lo, hi), (hlo, hhi), wall_colour, prior = _SCENES[scene]
    room = np.array([rng.uniform(lo, hi), rng.uniform(hlo, hhi), rng.uniform(lo, hi) * 1.3])
    cam = np.array([rng.uniform(0.3, 0.7) * room[0], rng.uniform(1.0, 1.8), rng.uniform(0.1, 0.35) * room[2]])
    yaw, pitch, fov = rng.uniform(-0.6, 0.6), rng.uniform(-0.45, -0.05), rng.uniform(55.0, 75.0)
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    right = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    down = np.cross(right, forward)
    tan = math.tan(math.radians(fov) / 2)
    grid = (2 * np.arange(size) + 1) / size - 1
    v, u = np.meshgrid(grid, grid, indexing="ij")
    d = forward + (u.reshape(-1, 1) * tan) * right + (v.reshape(-1, 1) * tan) * down
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(cam, d.shape)
    n_rays = d.shape[0]

    # room: the nearest wall/floor/ceiling the ray leaves through
    safe = np.where(np.abs(d) < 1e-9, 1e-9, d)
    t_axes = np.where(safe > 0, (room - o) / safe, -o / safe)
    axis = t_axes.argmin(axis=1)
    t = t_axes[np.arange(n_rays), axis]
    normal = np.zeros_like(d)
    normal[np.arange(n_rays), axis] = -np.sign(safe[np.arange(n_rays), axis])
    label = np.where(axis == 1, np.where(d[:, 1] < 0, 0, 2), 1)
    point = o + t[:, None] * d
    local = point.copy()
    owner = np.full(n_rays, -1)

    objects = _place_objects(rng, room, cam, yaw, fov, prior)
    for k, (cls, centre, half, obj_yaw) in enumerate(objects):
        if cls in (0, 1):
            t_obj, n_obj, p_obj = _ray_box(o, d, centre, half, obj_yaw)
        elif cls in (2, 5):
            t_obj, n_obj, p_obj = _ray_ellipsoid(o, d, centre, half)
        else:
            t_obj, n_obj, p_obj = _ray_cylinder(o, d, centre - np.array([0, half[1], 0]), half[0], 2 * half[1])
        closer = t_obj < t
        t = np.where(closer, t_obj, t)
        normal[closer] = n_obj[closer]
        label[closer] = 3 + cls
        local[closer] = p_obj[closer]
        owner[closer] = k
    if not (owner >= 0).any():
        return None
    point = o + t[:, None] * d

    # albedo: class mean + per-surface jitter, modulated by a random texture per surface
    albedo = np.empty_like(d)
    surfaces = [(label == c) & (owner < 0) for c in range(3)] + [owner == k for k in range(len(objects))]
    for mask_index, mask in enumerate(surfaces):
        if not mask.any():
            continue
        cls = mask_index if mask_index < 3 else 3 + objects[mask_index - 3][0]
        base = np.array(wall_colour) if cls == 1 else np.array(_ALBEDO[cls])
        colour = np.clip(base + rng.normal(0, 0.16, 3), 0.05, 1.0)
        pattern = _texture(rng, local[mask])
        strength = rng.uniform(0.1, 0.5)
        albedo[mask] = colour * (1 - strength * pattern[:, None])

    light = np.array([rng.uniform(0.2, 0.8) * room[0], room[1] - 0.2, rng.uniform(0.3, 0.9) * room[2]])
    to_light = light - point
    dist = np.linalg.norm(to_light, axis=1)
    lambert = np.clip((normal * to_light).sum(1) / dist, 0, None)
    ambient, power = rng.uniform(0.2, 0.45), rng.uniform(0.7, 1.3)
    shade = ambient + power * lambert / (1 + 0.04 * dist**2)
    rgb = albedo * shade[:, None] * rng.uniform(0.85, 1.15, 3)

    # windows on the far and side walls: blown out, no depth, label undefined
    invalid = np.zeros(n_rays, dtype=bool)
    for _ in range(int(rng.integers(0, 3))):
        wall_axis = int(rng.choice([0, 2]))
        wall_value = room[wall_axis] if rng.random() < 0.7 else 0.0
        along = 2 - wall_axis
        centre, width = rng.uniform(0.25, 0.75) * room[along], rng.uniform(0.4, 1.2)
        bottom, top = rng.uniform(0.8, 1.2), rng.uniform(1.7, room[1] - 0.2)
        on_wall = (owner < 0) & (label == 1) & (np.abs(point[:, wall_axis] - wall_value) < 1e-6)
        window = on_wall & (np.abs(point[:, along] - centre) < width / 2) & (point[:, 1] > bottom) & (point[:, 1] < top)
        invalid |= window
    rgb[invalid] = 0.97
    rgb = np.clip(rgb + rng.normal(0, rng.uniform(0.01, 0.05), rgb.shape), 0, 1)

    depth = t * (d @ forward)
    cam_normal = np.stack([normal @ right, normal @ down, normal @ forward], 1)
    cam_normal *= -np.sign((cam_normal * np.stack([d @ right, d @ down, d @ forward], 1)).sum(1, keepdims=True))
    label = np.where(invalid, IGNORE_INDEX, label)
    depth = np.where(invalid, 0.0, depth)
    cam_normal[invalid] = 0.0
    counts = np.bincount(owner[(owner >= 0) & ~invalid], minlength=len(objects))
    return {
        "image": (rgb.reshape(size, size, 3) * 255 + 0.5).astype(np.uint8),
        "seg": label.reshape(size, size).astype(np.uint8),
        "depth": depth.reshape(size, size).astype(np.float32),
        "normal": cam_normal.reshape(size, size, 3).astype(np.float32),
        "object": np.int64(objects[int(counts.argmax())][0]),
        "scene": np.int64(scene),
        "fov": np.float32(fov),
    }


def check_args(num_images: int, image_size: int, split: str) -> None:
    if num_images <= 0:
        raise ValueError(f"num_images must be positive, got {num_images}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def generate_scenes(
    num_images: int, image_size: int = 64, seed: int = 0, split: str = "train", first_index: int = 0,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Render images ``first_index .. first_index + num_images - 1`` of ``(seed, split)``.

    Arrays: image uint8 (N,H,W,3), seg uint8 (N,H,W), depth float32 (N,H,W),
    disparity float32 (N,H,W), normal float32 (N,H,W,3), object int64 (N,), scene int64 (N,),
    fov float32 (N,) in degrees.
    """
    check_args(num_images, image_size, split)
    samples = []
    for index in tqdm(range(first_index, first_index + num_images), desc=f"synthetic {split} scenes",
                      disable=not progress, leave=False):
        rng = np.random.default_rng([seed, SPLITS[split], index])
        sample = None
        while sample is None:
            sample = _render(rng, image_size)
        samples.append(sample)
    arrays = {key: np.stack([s[key] for s in samples]) for key in samples[0]}
    arrays["disparity"] = np.where(arrays["depth"] > 0, DISPARITY_SCALE / np.maximum(arrays["depth"], 1e-6), 0)
    arrays["disparity"] = arrays["disparity"].astype(np.float32)
    return arrays
