"""The flight core: everything between a sensor message and a velocity command, and nothing else.

Plain Python with an injectable clock; no ROS, no simulator, no PyTorch unless a checkpoint is
stepped eagerly. ``pilot_node``, the simulator's pilot policy (``eval``, ``demo``, ``sim``) and
``replay`` all fly through it, so what is evaluated is what flies.

- ``codec``: serialized ROS messages -> arrays, trusting nothing (``BadInput`` names the fault);
- ``image``: the one image preprocessing (centre crop to the model's aspect, then resize),
  shared with training, and the camera geometry it implies;
- ``runtime``: the network, stepped in onnxruntime (default) or eager PyTorch;
- ``gate``: timeouts, plausibility, fault hysteresis, resets and clamps between the network
  and the command stream;
- ``core``: runtime + gate + preprocessing, one call per frame.
"""
