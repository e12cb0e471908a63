"""The example of docs/compare.md, installed with auxnas as ``auxnas.examples.synthetic_folder``:

    python -m auxnas.examples.synthetic_folder data/my_scenes --num-train 200 --num-test 60 --missing 0.8
"""

from auxnas.examples.synthetic_folder import main

if __name__ == "__main__":
    main()
