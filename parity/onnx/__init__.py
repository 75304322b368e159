"""ONNX: every export's way from a framework to one file that onnxruntime runs; the toolkit
the adapters export with, which knows no adapter (parity/export/ drives it).

from_tf    Keras and tf_impl through tf2onnx, the kernels kept out of it, and the memory that
           takes (torch exports itself: parity/adapters/torch_adapter.py)
fold       weights folded back in, and the ops tf2onnx writes unlike torch respelled as torch does
canon/     one spelling for the ops the three implementations write differently, by family:
           resize, shapes, pools, lrn, layout
write      finalize: canon, the interface's names, an atomic write, a full check
graph      what the rewrites (fold, canon) share: constants, producers/consumers, shapes, probes
runtime    onnxruntime sessions, the kernels they run
"""
