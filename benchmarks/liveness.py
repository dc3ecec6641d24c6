"""The head-turn liveness check: attacks accepted (APCER) and real turns refused (BPCER), with the rules shipped.

    python -m benchmarks.liveness [--attacks 1000] [--choose] [--source lfw-deepfunneled] [--processes 2]
    python -m benchmarks.liveness --speed 10
    python -m benchmarks.liveness --renderings

Genuine: the real webcam turns of ../shared/data/liveness/webcam-head-turns.gif (one man). Its frames are labelled
by hand into stretches (facing the camera, turned to his left, turned to his right, looking down); every window
that starts and ends facing the camera and holds 2-3 alternating turns is a burst, at every start and end
frame of those stretches, and at 1, 2 and 3 frames' stride. The gif repeats each pose for about 8 frames (the
demo that made it ran at about 2 poses a second), so its windows are few and much alike: the evidence is thin.
Its frames are read as the gif decodes them, and again each through a JPEG at the door screen's quality (q92):
a 90-px face's landmarks move by degrees under recompression, and the report shows what that does, and how
much of it comes from the box the CNN finds (which the JPEG moves on some frames) and how much from the pixels.

Attacks (each burst answers a random challenge of 2-3 prompts as well as the attacker can; `--attacks` each):
- card:   a photo held as a card and turned the way each prompt asks (up to 25-65 degrees), tilted, rolled,
          moved, and curved a little (a fold of at most 6 degrees) as a held print is;
- bent:   the same card folded at the nose by 10-30 degrees on each side, so that turning it moves the nose
          across the eyes as a head's does (reported apart: it is the card kind's hardest form);
- swap:   two photos of one person at opposite poses (at least 8 degrees each way), each shown for the turn
          it fits, the nearer-frontal one between turns, each with a card's small motion;
- print, tablet: the print and tablet stills of ../shared/data/liveness/attacks animated as the card kind.
Photos come from --source (LFW, the test side); `--choose` makes the same attacks from CelebA-wild (the training
side) and prints APCER and BPCER over a grid of rules, the one the rules are chosen on.
A burst is accepted when every frame has exactly one face and `check_turns` passes; the identity decision
is not part of it (the attack shows the right person). Frames' features are cached in ~/.cache/facegate.
Each report is given twice: with the rules as shipped, and with the shape check (dlib's 68 points; off as
shipped, for its predictor's licence) at the value an operator who turns it on would set.
`--renderings` reads the genuine windows only, through what a door's camera and encoder could make of the same
frames (JPEG at several qualities, the face larger or smaller), with the shipped rules and with the most lenient
turn rules: how much the genuine figure depends on the gif's exact pixels.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import random
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from multiprocessing import get_context

import numpy as np
from PIL import Image, ImageSequence

from benchmarks.common import DATA, machine
from model.datasets.sources import DEFAULT_CACHE, detect_source
from model.evaluation.attacks import CardPose, card_frame
from model.faces.config import MEASURED_MIN_SHAPE, SERVICE_POLICY, TurnRules
from model.faces.errors import FaceError
from model.faces.liveness import BurstFaces, HeadPose, Prompt, check_turns
from model.faces.pipeline import FacePipeline

LIVENESS = DATA / "liveness"
GIF = LIVENESS / "webcam-head-turns.gif"
KINDS = ("card", "bent", "swap", "print", "tablet")
# The gif's stretches, labelled by eye (frame ranges, end exclusive): C faces the camera (D: looking down, which
# counts as facing it), L is turned to his left, R to his right. From frame 120 a hand covers the face.
GIF_STRETCHES = (("R", 0, 8), ("C", 8, 16), ("L", 16, 24), ("C", 24, 40), ("R", 40, 64), ("C", 64, 72),
                 ("D", 72, 88), ("L", 88, 96), ("C", 96, 120))
SEQUENCES = ((Prompt.LEFT, Prompt.RIGHT), (Prompt.RIGHT, Prompt.LEFT), (Prompt.LEFT, Prompt.RIGHT, Prompt.LEFT),
             (Prompt.RIGHT, Prompt.LEFT, Prompt.RIGHT))
Points = tuple[tuple[float, float], ...]  # a frame's five landmarks, or its 68, as the service reads them
# The door screen's JPEG quality (door.js: 0.92).
DOOR_JPEG_QUALITY = 92
# The service's face policy for a burst: any second face refuses it.
BURST_POLICY = replace(SERVICE_POLICY, multi_face="reject")


def read_burst(pipeline: FacePipeline, frames: list[np.ndarray]
               ) -> tuple[str | None, tuple[Points, ...], tuple[Points, ...]]:
    """The burst's five points and 68 points as the service reads them (model.faces.liveness.BurstFaces), and the
    error code that refuses the burst first (no_face, multiple_faces...), if one does: then the points stop there."""
    faces, points, shapes = BurstFaces(pipeline, BURST_POLICY), [], []
    for rgb in frames:
        try:
            face = faces.next(rgb)
        except FaceError as exc:
            return exc.code, tuple(points), tuple(shapes)
        points.append(face.landmarks)
        shapes.append(pipeline.shape(rgb, face))
    return None, tuple(points), tuple(shapes)


def gif_frames() -> list[np.ndarray]:
    return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(Image.open(GIF))]


def decode_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def door_jpeg(frame: np.ndarray, quality: int = DOOR_JPEG_QUALITY) -> bytes:
    """The frame as the door screen sends it: a JPEG at its quality (app/console/assets/door.js), or another."""
    out = io.BytesIO()
    Image.fromarray(frame).save(out, "JPEG", quality=quality)
    return out.getvalue()


def frame_by_frame(pipeline: FacePipeline, frames: list[np.ndarray]) -> list[tuple[str | None, HeadPose | None]]:
    """Each frame read alone: its error code, or its pose."""
    read = (read_burst(pipeline, [frame]) for frame in frames)
    return [(code, HeadPose.of(points[0], shapes[0]) if points else None) for code, points, shapes in read]


def genuine_windows() -> Iterator[tuple[tuple[Prompt, ...], list[int]]]:
    """(prompts, frame numbers) of every burst the gif's labelled stretches answer."""
    turns = {"L": Prompt.LEFT, "R": Prompt.RIGHT}
    for a, b in itertools.combinations(range(len(GIF_STRETCHES)), 2):
        if GIF_STRETCHES[a][0] != "C" or GIF_STRETCHES[b][0] not in "CD":
            continue
        prompts = tuple(turns[kind] for kind, _, _ in GIF_STRETCHES[a + 1:b] if kind in turns)
        if prompts not in SEQUENCES:
            continue
        for stride in (1, 2, 3):
            for start in range(GIF_STRETCHES[a][1], GIF_STRETCHES[a][2] - stride):
                for end in range(GIF_STRETCHES[b][1], GIF_STRETCHES[b][2]):
                    yield prompts, list(range(start, end + 1, stride))


# --- attacks ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Burst:
    kind: str
    seed: int
    prompts: tuple[str, ...]
    refused: str | None  # the error code the service would answer before the liveness check, if any
    points: tuple[Points, ...]
    shapes: tuple[Points, ...]

    @cached_property
    def poses(self) -> tuple[HeadPose, ...]:
        return tuple(HeadPose.of(frame, shape) for frame, shape in zip(self.points, self.shapes, strict=True))


def _trajectory(prompts: tuple[Prompt, ...], rng: random.Random) -> list[float]:
    """The card's yaw, as a fraction of its amplitude, frame by frame: steady, then each turn and back. A card
    turned to its right (negative yaw) moves the nose as a head turned to its left does."""
    path = [0.0, 0.0]
    for prompt in prompts:
        path += [-prompt.sign * f for f in (0.5, 0.9, 1.0, 0.4)] + [0.0]
    return [f + rng.uniform(-0.04, 0.04) for f in path]


def _held(rng: random.Random, bend: tuple[float, float]) -> CardPose:
    return CardPose(pitch=rng.uniform(-12, 12), roll=rng.uniform(-8, 8), bend=rng.uniform(*bend),
                    fold=rng.uniform(0.47, 0.53), distance=rng.uniform(0.6, 1.5),
                    shift=(rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1)))


def _jittered(pose: CardPose, yaw: float, rng: random.Random) -> CardPose:
    return replace(pose, yaw=yaw + rng.uniform(-3, 3), pitch=pose.pitch + rng.uniform(-2, 2),
                   roll=pose.roll + rng.uniform(-2, 2), distance=pose.distance * rng.uniform(0.97, 1.03))


def card_burst(photo: np.ndarray, prompts: tuple[Prompt, ...], rng: random.Random,
               bend: tuple[float, float]) -> list[np.ndarray]:
    held, amplitude = _held(rng, bend), rng.uniform(25, 65)
    return [card_frame(photo, _jittered(held, f * amplitude, rng)) for f in _trajectory(prompts, rng)]


def swap_burst(photos: dict[Prompt, np.ndarray], frontal: Prompt, prompts: tuple[Prompt, ...],
               rng: random.Random) -> list[np.ndarray]:
    """The photo turned each prompt's way for its turn, the nearer-frontal one otherwise."""
    held = _held(rng, (0, 6))
    shown = [photos[frontal]] * 2
    for prompt in prompts:
        shown += [photos[prompt]] * 4 + [photos[frontal]]
    return [card_frame(photo, _jittered(held, 0.0, rng)) for photo in shown]


_pipeline: FacePipeline | None = None


def _features(task: tuple) -> Burst:
    global _pipeline
    _pipeline = _pipeline or FacePipeline()
    kind, seed, make = task
    rng = random.Random(seed)
    prompts = SEQUENCES[rng.randrange(len(SEQUENCES))]
    refused, points, shapes = read_burst(_pipeline, make(prompts, rng))
    return Burst(kind, seed, tuple(p.value for p in prompts), refused, points, shapes)


@dataclass(frozen=True)
class CardMaker:
    photo: bytes
    bend: tuple[float, float]

    def __call__(self, prompts: tuple[Prompt, ...], rng: random.Random) -> list[np.ndarray]:
        return card_burst(decode_rgb(self.photo), prompts, rng, self.bend)


@dataclass(frozen=True)
class SwapMaker:
    left: bytes  # the photo turned to the person's left
    right: bytes
    frontal: str

    def __call__(self, prompts: tuple[Prompt, ...], rng: random.Random) -> list[np.ndarray]:
        photos = {Prompt.LEFT: self.left, Prompt.RIGHT: self.right}
        decoded = {p: decode_rgb(data) for p, data in photos.items()}
        return swap_burst(decoded, Prompt(self.frontal), prompts, rng)


def _source_photos(source: str) -> tuple[dict[str, bytes], dict[str, float], dict[str, str]]:
    """Every photo of a source (bytes), its face's yaw where a face was found, and its identity."""
    path = DATA / f"{source}.tar"
    faces = detect_source(path, cache=DEFAULT_CACHE, with_teacher=False)
    yaws = {str(p): HeadPose.of(faces.landmarks[i]).yaw for i, p in enumerate(faces.paths) if faces.found[i]}
    labels = {str(p): str(label) for p, label in zip(faces.paths, faces.labels, strict=True)}
    with tarfile.open(path) as archive:
        photos = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.name in yaws}
    return photos, yaws, labels


def _still(name: str) -> bytes:
    """A presentation-attack still, upright (they are stored turned 90 degrees, the head pointing left)."""
    out = io.BytesIO()
    Image.open(LIVENESS / "attacks" / name).convert("RGB").rotate(-90, expand=True).save(out, "PNG")
    return out.getvalue()


def attack_tasks(source: str, count: int, kinds: tuple[str, ...], seed: int = 0) -> list[tuple]:
    rng = random.Random(seed)
    photos, yaws, labels = _source_photos(source)
    frontal = sorted(p for p, y in yaws.items() if abs(y) < 10)
    by_person: dict[str, dict[Prompt, list[str]]] = {}
    for p, y in yaws.items():
        if abs(y) >= 8:
            by_person.setdefault(labels[p], {}).setdefault(Prompt.LEFT if y > 0 else Prompt.RIGHT, []).append(p)
    pairs = sorted(person for person, sides in by_person.items() if len(sides) == 2)
    tasks = []
    for kind in kinds:
        for k in range(count):
            if kind in ("card", "bent"):
                maker = CardMaker(photos[rng.choice(frontal)], (0, 6) if kind == "card" else (10, 30))
            elif kind == "swap":
                sides = by_person[rng.choice(pairs)]
                left, right = rng.choice(sides[Prompt.LEFT]), rng.choice(sides[Prompt.RIGHT])
                nearer = Prompt.LEFT if abs(yaws[left]) < abs(yaws[right]) else Prompt.RIGHT
                maker = SwapMaker(photos[left], photos[right], nearer.value)
            else:
                maker = CardMaker(_still(f"{kind}.jpg"), (0, 6))
            tasks.append((kind, seed * 100_000 + KINDS.index(kind) * 10_000 + k, maker))
    return tasks


def _points(frames: list) -> tuple[Points, ...]:
    return tuple(tuple((float(x), float(y)) for x, y in frame) for frame in frames)


def attack_features(source: str, count: int, kinds: tuple[str, ...], processes: int) -> list[Burst]:
    cache = DEFAULT_CACHE / "liveness" / f"{source}-{count}-{'-'.join(kinds)}-v6.json"
    if cache.exists():
        return [Burst(b["kind"], b["seed"], tuple(b["prompts"]), b["refused"], _points(b["points"]),
                      _points(b["shapes"]))
                for b in json.loads(cache.read_text())]
    tasks = attack_tasks(source, count, kinds)
    with get_context("spawn").Pool(processes) as pool:
        bursts = list(pool.imap(_features, tasks, chunksize=4))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps([asdict(b) for b in bursts]))
    return bursts


# --- decisions -------------------------------------------------------------------------------------------

def refusal(refused: str | None, poses: tuple[HeadPose, ...], prompts: tuple[Prompt, ...], rules: TurnRules
            ) -> str | None:
    """Why the service refuses the burst: an error code, or the liveness check that fails; None: accepted."""
    if refused is not None:
        return refused
    return check_turns(poses, prompts, rules).check


def apcer(bursts: list[Burst], rules: TurnRules) -> dict[str, tuple[int, int]]:
    """Per kind: (accepted, attempted)."""
    out: dict[str, tuple[int, int]] = {}
    for burst in bursts:
        ok = refusal(burst.refused, burst.poses, tuple(Prompt(p) for p in burst.prompts), rules) is None
        got, total = out.get(burst.kind, (0, 0))
        out[burst.kind] = (got + ok, total + 1)
    return out


def bpcer(gif: list[tuple[str | None, HeadPose | None]], rules: TurnRules) -> tuple[int, int, dict[str, int]]:
    """(refused, windows, refused by reason). `gif`: each frame's error code, or its pose (frames are looked at
    one by one, so a window's frames read the same wherever it starts)."""
    refused, total, why = 0, 0, {}
    for prompts, frames in genuine_windows():
        code = next((gif[i][0] for i in frames if gif[i][0] is not None), None)
        reason = refusal(code, tuple(gif[i][1] for i in frames), prompts, rules)
        total += 1
        if reason is not None:
            refused += 1
            why[reason] = why.get(reason, 0) + 1
    return refused, total, why


def report(name: str, bursts: list[Burst], gif: list[tuple[str | None, HeadPose | None]], rules: TurnRules) -> None:
    refused, total, why = bpcer(gif, rules)
    cells = [f"{kind} {got / n:6.2%} ({got}/{n})" for kind, (got, n) in apcer(bursts, rules).items()]
    print(f"{name}: APCER " + ", ".join(cells) + f"; BPCER {refused / total:.2%} ({refused}/{total}, {why})")


# A 15-frame burst of the gif answering a challenge of two turns, from where the man wears his cap (the frames
# that face the camera must all be one person at the 1:1 threshold): facing the camera, each turn and back.
# His turn to his left is his turn to his right mirrored (negative numbers): his own reads weakly as a JPEG.
SPEED_STEADY = (64, 65)
SPEED_BURST = {Prompt.RIGHT: (44, 48, 53, 56, 66, 67, 68), Prompt.LEFT: (-44, -48, -53, -56, 69, 70)}


def speed(repeats: int) -> None:
    """/verify with a challenge and a 15-frame burst of the gif, through the app (HTTP parsing included, an
    in-process client, SQLite): wall time per request. The gif's faces are found only by the CNN fallback."""
    import tempfile

    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app

    frames = {}
    for number, frame in enumerate(gif_frames()[:120]):
        for sign, picture in ((1, frame), (-1, frame[:, ::-1])):
            frames[sign * number] = door_jpeg(picture)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite:///{folder}/gallery.db", auto_migrate=True, auth=False,
                            verify_max_failures=0, audit_spool_dir=f"{folder}/spool")
        with TestClient(create_app(settings)) as client:
            client.post("/enroll", params={"force": "true"}, data={"employee_id": "man"},
                        files=[("image", ("man.jpg", frames[66], "image/jpeg"))]).raise_for_status()
            times, answers = [], {}
            for _ in range(repeats + 1):  # the first one warms up
                challenge = {"prompts": ()}
                while len(challenge["prompts"]) != 2:  # half of them ask for three turns: 15 frames show two
                    challenge = client.post("/liveness/challenge").json()
                numbers = (*SPEED_STEADY, *(n for prompt in challenge["prompts"] for n in SPEED_BURST[Prompt(prompt)]))
                files = [("image", (f"{i}.jpg", frames[n], "image/jpeg")) for i, n in enumerate(numbers)]
                started = time.perf_counter()
                fields = {"employee_id": "man", "challenge_id": challenge["challenge_id"]}
                response = client.post("/verify", data=fields, files=files)
                times.append(time.perf_counter() - started)
                answer = response.json().get("error", {}).get("code") or ("match" if response.json()["match"] else
                                                                           "no_match")
                answers[answer] = answers.get(answer, 0) + 1
    times = np.array(times[1:]) * 1000
    print(f"/verify with a 15-frame challenge burst (JPEG q92, 478x268): p50 {np.percentile(times, 50):.0f} ms, "
          f"p90 {np.percentile(times, 90):.0f} ms over {repeats}; answers {answers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attacks", type=int, default=1000, help="bursts per attack kind")
    parser.add_argument("--source", default="lfw-deepfunneled", help="the photos attacks are made of")
    parser.add_argument("--choose", action="store_true", help="the grid of rules, on CelebA-wild's attacks")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--speed", type=int, metavar="N", help="only time N verifications of a 15-frame burst")
    parser.add_argument("--renderings", action="store_true",
                        help="only the genuine windows, re-encoded and rescaled as a door's camera could")
    args = parser.parse_args()
    print(machine())
    if args.speed:
        speed(args.speed)
        return
    if args.renderings:
        renderings(FacePipeline())
        return
    if args.choose:
        bursts = attack_features("celeba-wild", args.attacks, ("card", "bent", "swap"), args.processes)
    else:
        bursts = attack_features(args.source, args.attacks, KINDS, args.processes)
    # After the attacks, whose photos' detection forks its workers from this process: dlib's own CNN, run here
    # first, hung them (its PyTorch port leaves a forked child one thread: model.faces.mmod).
    pipeline = FacePipeline()
    gif = frame_by_frame(pipeline, gif_frames()[:120])
    windows = list(genuine_windows())
    print(f"genuine: {len(windows)} windows of the gif, {len({tuple(p) for p, _ in windows})} prompt sequences "
          f"({sorted({'-'.join(p) for p, _ in windows})})")
    shipped = TurnRules()
    shaped = replace(shipped, min_shape=MEASURED_MIN_SHAPE)  # the shape check, which an operator may turn on
    print(f"shipped rules: {shipped}")
    if args.choose:
        grid = itertools.product((10, 11, 12, 13), (0.70, 0.75, 0.80, 0.85, 0.90),
                                 (0, 0.030, 0.032, 0.034, 0.036, 0.038))
        for turn, spread, relief in grid:
            report(f"turn {turn} min_spread {spread:.2f} min_relief {relief:.3f}", bursts, gif,
                   replace(shipped, turn=turn, min_spread=spread, min_relief=relief))
        for shape in (0.090, 0.095, 0.100, 0.105, 0.110, 0.115):  # on top of the shipped rules
            report(f"shipped rules with min_shape {shape:.3f}", bursts, gif, replace(shipped, min_shape=shape))
        return
    report(f"{args.source} (and the stills)", bursts, gif, shipped)
    report(f"{args.source} (and the stills), with min_shape {MEASURED_MIN_SHAPE:g}", bursts, gif, shaped)
    # The same windows as the door screen sends its frames: a JPEG of each (the gif is lossy already).
    frames = gif_frames()[:120]
    jpegs = [decode_rgb(door_jpeg(frame)) for frame in frames]
    door = frame_by_frame(pipeline, jpegs)
    for name, rules in (("", shipped), (f", with min_shape {MEASURED_MIN_SHAPE:g}", shaped)):
        refused, total, why = bpcer(door, rules)
        print(f"the gif's frames as JPEG q{DOOR_JPEG_QUALITY}{name}: BPCER {refused / total:.2%} ({refused}/{total}, "
              f"{why})")
    jpeg_causes(pipeline, frames, jpegs, shipped)


# What a door's camera and encoder could make of the gif's frames: (scale of the frame, bicubic; JPEG quality,
# None for none). The door screen sends JPEG q92 (door.js), and a camera nearer the face films it larger.
RENDERINGS = {"as decoded": (1.0, None), "q85": (1.0, 85), "q92": (1.0, 92), "q98": (1.0, 98), "x0.75": (0.75, None),
              "x1.5": (1.5, None), "x2": (2.0, None), "x1.5 q92": (1.5, 92), "x2 q92": (2.0, 92)}


def rendered(frame: np.ndarray, scale: float, quality: int | None) -> np.ndarray:
    if scale != 1:
        height, width = frame.shape[:2]
        frame = np.asarray(Image.fromarray(frame).resize((round(width * scale), round(height * scale)),
                                                         Image.BICUBIC))
    return frame if quality is None else decode_rgb(door_jpeg(frame, quality))


def renderings(pipeline: FacePipeline) -> None:
    """BPCER of the gif's windows in each rendering, with the shipped rules and with the turns alone at their
    most lenient (9 degrees out, back within 8; no depth or relief check)."""
    frames = gif_frames()[:120]
    read = {name: frame_by_frame(pipeline, [rendered(frame, *how) for frame in frames])
            for name, how in RENDERINGS.items()}
    lenient = replace(TurnRules(), turn=9.0, min_spread=0.0, min_relief=0.0)
    for label, rules in (("shipped rules", TurnRules()), ("turns alone, 9 degrees", lenient)):
        cells = []
        for name, frames_read in read.items():
            refused, total, _ = bpcer(frames_read, rules)
            cells.append(f"{name} {refused / total:.1%}")
        print(f"BPCER, {label}: " + ", ".join(cells))


def box_shift_yaw(pipeline: FacePipeline, rgb: np.ndarray, box: tuple[float, ...]) -> float:
    """The most that the yaw read in `box` changes when the box moves by 5 % of its side, each of 8 ways."""
    left, top, right, bottom = box
    dx, dy = 0.05 * (right - left), 0.05 * (bottom - top)
    yaw = HeadPose.of(pipeline.landmarks(rgb, box)).yaw
    moved = [(left + i * dx, top + j * dy, right + i * dx, bottom + j * dy)
             for i, j in itertools.product((-1, 0, 1), repeat=2) if i or j]
    return max(abs(HeadPose.of(pipeline.landmarks(rgb, other)).yaw - yaw) for other in moved)


def jpeg_causes(pipeline: FacePipeline, frames: list[np.ndarray], jpegs: list[np.ndarray], rules: TurnRules) -> None:
    """What the JPEG changes, each alone (the other kept as the gif's): the box the CNN finds on some frames, and
    the pixels that dlib's five points are read from inside a box. Both move them by degrees on this 90-px face."""
    def first_box(rgb: np.ndarray) -> tuple[float, ...] | None:
        found = pipeline.detect_boxes(rgb)
        return tuple(found[0][:4]) if found else None

    boxes = {"gif": [first_box(frame) for frame in frames], "jpeg": [first_box(frame) for frame in jpegs]}
    moved = sum(a is None or b is None or max(abs(np.subtract(a, b))) > 3
                for a, b in zip(boxes["gif"], boxes["jpeg"], strict=True))
    print(f"  the JPEG moves the face's box by more than 3 px on {moved} of {len(frames)} frames")
    shifts = [box_shift_yaw(pipeline, rgb, box) for rgb, box in zip(frames, boxes["gif"], strict=True) if box]
    print(f"  the gif's box moved by 5 % of its side, each of 8 ways: the yaw changes by up to "
          f"{np.median(shifts):.1f} degrees at the median frame, {np.percentile(shifts, 90):.1f} at the 90th")
    for pixels, box in (("gif", "jpeg"), ("jpeg", "gif")):
        read = [(None, HeadPose.of(pipeline.landmarks(rgb, found))) if found else ("no_face", None)
                for rgb, found in zip(frames if pixels == "gif" else jpegs, boxes[box], strict=True)]
        refused, total, why = bpcer(read, rules)
        print(f"  the {pixels}'s pixels in the {box}'s boxes: BPCER {refused / total:.2%} ({refused}/{total}, {why})")


if __name__ == "__main__":
    main()
