"""Write the example instructions: the first and the last frame of one held-out Dancing Shapes
clip (a red circle gliding right on a checkered background, still camera), at the world's
128x128. The web demo's first example renders the same pair.

    python examples/make_examples.py      # writes examples/red_circle.png, red_circle_end.png
"""

from pathlib import Path

from pixeldance.cli.demo import example_frames

if __name__ == "__main__":
    for path in example_frames(Path(__file__).resolve().parent):
        print(f"wrote {path}")
