"""Captions for Dancing Shapes clips, made from their parameters in varied wording.

The functions take a clip's parameters (:class:`pixeldance.data.shapes.ShapesClip` and its
``objects``) and a numpy generator for the wording; this module imports nothing from the world.
"""

from __future__ import annotations

_MOVE_VERBS = ("moves", "slides", "glides", "travels", "drifts")
DIRECTION_WORDS = {
    "right": ("to the right", "right", "rightward"),
    "left": ("to the left", "left", "leftward"),
    "up": ("up", "upward", "towards the top"),
    "down": ("down", "downward", "towards the bottom"),
    "up-right": ("up and to the right", "diagonally up-right", "towards the top right"),
    "up-left": ("up and to the left", "diagonally up-left", "towards the top left"),
    "down-right": ("down and to the right", "diagonally down-right", "towards the bottom right"),
    "down-left": ("down and to the left", "diagonally down-left", "towards the bottom left"),
}
MOTION_WORDS = {
    "bounce": ("bounces up and down", "is bouncing", "hops in place"),
    "grow": ("grows bigger", "expands", "gets larger"),
    "shrink": ("shrinks", "gets smaller", "contracts"),
    "rotate": ("rotates", "spins", "turns around"),
    "fade": ("fades away", "fades out", "slowly disappears"),  # only when asked for
}
_CAMERA = {
    "pan-left": ("the camera pans left", "panning left"),
    "pan-right": ("the camera pans right", "panning right"),
    "pan-up": ("the camera tilts up", "panning up"),
    "pan-down": ("the camera tilts down", "panning down"),
    "zoom-in": ("the camera zooms in", "zooming in"),
    "zoom-out": ("the camera zooms out", "zooming out"),
}
_BG_WORDS = {
    "stripes": "striped",
    "checker": "checkered",
    "gradient": "gradient",
    "blobs": "mottled",
}


def describe_object(obj, rng) -> str:
    """One object's words: its colour, shape and motion."""
    article = "an" if obj.colour[0] in "aeiou" else "a"
    noun = f"{article} {obj.colour} {obj.shape}"
    if obj.motion == "move":
        return f"{noun} {rng.choice(_MOVE_VERBS)} {rng.choice(DIRECTION_WORDS[obj.direction])}"
    return f"{noun} {rng.choice(MOTION_WORDS[obj.motion])}"


def caption_for(clip, rng) -> str:
    """A clip's caption: its objects, sometimes its background, its camera move."""
    parts = [describe_object(o, rng) for o in clip.objects]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if rng.random() < 0.5:
        text += f" on a {_BG_WORDS[clip.background]} background"
    if clip.camera != "static":
        cam = rng.choice(_CAMERA[clip.camera])
        text = (
            f"{text}, {cam}" if rng.random() < 0.5 else f"{cam[0].upper() + cam[1:]} while {text}"
        )
    return text[0].upper() + text[1:]


def still_caption(clip, rng) -> str:
    """A still image's caption: what its objects are and the background."""
    nouns = [
        f"{'an' if o.colour[0] in 'aeiou' else 'a'} {o.colour} {o.shape}" for o in clip.objects
    ]
    text = nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]
    text += f" on a {_BG_WORDS[clip.background]} background"
    return text[0].upper() + text[1:]
