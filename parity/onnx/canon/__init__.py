"""One spelling for the ops torch_impl, keras_impl and tf_impl write differently in ONNX.

Applied to all three exports (in write.finalize, the last step of every export), so
one model's three graphs run the same onnxruntime kernels. Each rewrite replaces a subgraph
only where it is shown to compute the same values, and leaves any other graph as it is:

- nearest upsampling by two Gathers (Keras/TF: torch's index rule, on NHWC between layout
  Transposes) becomes torch's Resize(nearest, asymmetric, floor) to the same sizes, where
  onnxruntime's Resize picks exactly the gathered rows and columns (checked on an index map);
- bilinear upsampling with aligned corners by Gathers and blends (Keras/TF's
  F.upsample_bilinear: two taps and two weights per axis, on NHWC between layout Transposes)
  becomes torch's Resize(linear, align_corners) to the same sizes, where a probe agrees;
- an adaptive average pool on a map it does not divide (torch: GatherND/Where/Gather/Add/Div
  between Transposes; Keras/TF: Slice/ReduceMean/Concat per bin) becomes one spelling, the
  per-bin Slice/ReduceMean/Concat over H, then W; a subgraph is taken for one only after it
  computed torch's adaptive pool on a random probe;
- an AveragePool of kernel 1, stride 1 (an identity pool) goes, as keras_impl writes none;
- shape arithmetic whose values are known (a static H, W read back with Shape at run time:
  tf_impl's bilinear x2 `2 * tf.shape(x)[1:3]` and its pad-to-skip) is folded to constants;
  a Pad that then pads nothing goes, and a bilinear Resize to sizes `(N, C) of its input +
  constant integer multiples of H, W` becomes Resize by scales, as torch writes
  F.interpolate(scale_factor=...) (checked to give the same values on a probe);
- a Transpose that undoes the one before it goes, and so does a Reshape of a graph output
  to the shape it already has;
- the global mean of a 1x1 map is taken on the NCHW map, as torch does, where tf2onnx
  takes it on the NHWC Reshape it writes for the map's layout transpose (NiN, Inception-v3
  at their small test sizes);
- a local response norm across channels (torch: Pow/Pad/AveragePool/Squeeze/Mul/Add/Pow/Div;
  Keras/TF: Mul/Pad/Slice/Add/Mul/Add/Log/Mul/Exp/Mul) becomes one ONNX LRN for an odd window,
  and torch's decomposition for an even one (ONNX's LRN centres it the other way), where a
  probe shows the subgraph computes it with a size, alpha, beta and bias read from its constants;
- a zero Pad of H, W before an AveragePool (or before a ReduceMean over H, W: a pool whose
  window covers the padded map) becomes AveragePool(pads, count_include_pad=1), as torch
  writes avg_pool2d(padding=...);
- a Concat of a Concat's output along the same axis (torch's cat inside a cat) takes the
  inner inputs directly, as Keras/TF write it;
- an average pool that does not count its padding spelled as padded sums divided by a
  count map (tf_impl: the map from run-time shapes, around layout Transposes) becomes
  AveragePool(pads, count_include_pad=0), as torch writes it, where a probe agrees.
"""
from .layout import identity_output_reshapes_removed, inverse_transposes_cancelled, nested_concats_flattened
from .lrn import local_response_norms_as_lrn
from .pools import (adaptive_avg_pools_canonical, average_pools_not_counting_padding, identity_average_pools_removed,
                    layout_reshapes_before_global_means_removed, zero_pads_into_average_pools)
from .resize import corner_bilinear_as_resize, nearest_gathers_as_resize, resize_sizes_as_scales
from .shapes import shape_arithmetic_folded, zero_pads_removed


def canonical_spellings(graph, initializers: dict) -> dict:
    """Apply every rewrite of this package, in this order; {rewrite: number of places} (0 where
    nothing matched)."""
    done = {"shape_arithmetic": 0, "bilinear_scales": 0}
    while True:  # a Resize by scales has a static output shape, which lets more arithmetic fold
        step = {"shape_arithmetic": shape_arithmetic_folded(graph, initializers),
                "bilinear_scales": resize_sizes_as_scales(graph, initializers)}
        done = {k: done[k] + step[k] for k in done}
        if not any(step.values()):
            break
    return {**done,
            "zero_pad": zero_pads_removed(graph, initializers),
            "nearest_resize": nearest_gathers_as_resize(graph, initializers),
            "corner_bilinear": corner_bilinear_as_resize(graph, initializers),
            "adaptive_pool": adaptive_avg_pools_canonical(graph, initializers),
            "identity_pool": identity_average_pools_removed(graph, initializers),
            "inverse_transposes": inverse_transposes_cancelled(graph, initializers),
            "output_reshape": identity_output_reshapes_removed(graph, initializers),
            "global_mean_of_1x1": layout_reshapes_before_global_means_removed(graph, initializers),
            "lrn": local_response_norms_as_lrn(graph, initializers),
            "padded_average_pool": zero_pads_into_average_pools(graph, initializers),
            "nested_concat": nested_concats_flattened(graph, initializers),
            "pool_not_counting_padding": average_pools_not_counting_padding(graph, initializers)}
