"""One lock for all in-process model compute.

llama.cpp (OpenMP, busy-waiting threads) and torch each use every core. Run side by side on a
small machine they oversubscribe the cores and both slow down several-fold, so local inference
steps take turns instead. Remote providers are not affected.
"""

import threading

LOCAL_COMPUTE = threading.RLock()
