"""Export a derived network to TorchScript or ONNX, checked against PyTorch.

* :mod:`attnas.model_export.load` -- :func:`load_network`: the stand-alone network of an
  architecture with inherited, retrained, given or fresh weights;
* :mod:`attnas.model_export.write` -- the TorchScript and ONNX writers;
* :mod:`attnas.model_export.verify` -- running the written file against PyTorch;
* :mod:`attnas.model_export.export` -- :func:`export_network`: write, then check;
* :mod:`attnas.model_export.initial` -- the initial weights of ``attnas train --init-from``.
"""
from attnas.model_export.export import ExportResult, export_network
from attnas.model_export.load import (DEFAULT_DIMS, LoadedNetwork, dataset_dims, inherit_from_supernet,
                                      load_network, load_weights_file, run_kind)
from attnas.model_export.write import FORMATS, ONNX_EXPORTERS, require_onnx

__all__ = ["DEFAULT_DIMS", "ExportResult", "FORMATS", "LoadedNetwork", "ONNX_EXPORTERS", "dataset_dims",
           "export_network", "inherit_from_supernet", "load_network", "load_weights_file", "require_onnx",
           "run_kind"]
