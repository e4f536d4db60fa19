"""The flight core: everything between a sensor message and a velocity command, and nothing else.

Plain Python with an injectable clock; no ROS, no simulator, no PyTorch: nothing here imports
``liquid_pilot.nn`` (a checkpoint becomes a runtime in ``nn.runtime``; ``liquid_pilot.models`` is the
door from any model file to a runtime). ``pilot_node``, the simulator's pilot policy (``eval``, ``demo``, ``sim``) and
``replay`` all fly through it, so what is evaluated is what flies.

- ``codec``: serialized ROS messages -> arrays, trusting nothing (``BadInput`` names the fault),
  in bounded time (``Decoder``: reduced JPEG decoding, a decode budget);
- ``image``: the one image preprocessing (centre crop to the model's aspect, then resize),
  shared with training, and the camera geometry it implies;
- ``runtime``: the network, stepped in onnxruntime;
- ``artefact``: reading and checking the flight artefact (one ``.onnx`` file with its metadata);
- ``gate``: timeouts, plausibility, fault hysteresis and its window, resets and clamps between the
  network and the command stream;
- ``saliency``: where the network looks (occlusion sensitivity without PyTorch) and its overlay;
- ``core``: runtime + gate + preprocessing, one call per frame.
"""
