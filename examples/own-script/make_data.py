"""Write data/digits.npz from scikit-learn's bundled digits (1797 8x8 images; no download).

python make_data.py [OUT_DIR]
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("data"))
out.mkdir(parents=True, exist_ok=True)
x, y = load_digits(return_X_y=True)
np.savez_compressed(out / "digits.npz", x=x.astype(np.uint8), y=y.astype(np.uint8))
print(f"wrote {out / 'digits.npz'}: {len(y)} images")
