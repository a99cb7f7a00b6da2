import os

import torch

# The suite runs many tiny models; one thread each is fastest on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
