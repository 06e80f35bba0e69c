"""A self-contained HTML report of a search or training run.

:func:`write_report` reads a run folder (``config.json``, ``metrics.jsonl``,
``scores.json``, ``architecture.json``, ``result.json``; only
``metrics.jsonl`` or ``architecture.json`` is required) and writes one HTML
file with everything inline: CSS in a ``<style>`` element, every picture a
``data:image/png;base64`` URI, no script and no external URL, so the file can
be mailed or archived as it is.  Sections:

1. **summary** -- run kind, space, method, dataset, status, final and best
   accuracies, time, parameters (retraining);
2. **curves** -- loss and accuracy over epochs, and for a search the strength
   of every candidate at every choice point over epochs
   (:func:`attnas.viz.curves.plot_run`, the same figure as ``attnas show``).
   What a strength is depends on the method (:data:`SCORE_MEANING`: DARTS'
   softmax of alpha, IT-NAS's indicator-token attention, SPOS's sampling
   frequency, ...);
3. **other recorded scalars** -- every other numeric per-epoch field
   (learning rate, EnTranNAS' temperature and sparsity penalty, architecture
   loss, ...), one small plot each;
4. **final strengths** -- a heat map (choice points x candidates) of the
   final scores with the chosen candidate framed, and the same as a table;
5. **architecture** -- the derived architecture drawn
   (:func:`attnas.viz.draw.render_architecture`), its native string and its
   JSON; a search still running shows the architecture derived at its last
   epoch;
6. **benchmark** -- when the metrics carry ``bench_*`` fields (tabular
   look-ups of the architecture derived each epoch, e.g. NAS-Bench-201): the
   trajectory over epochs and the final values per dataset;
7. **configuration** -- the resolved ``config.json`` flattened into a table;
8. **per-epoch table** -- every scalar field of every epoch.

Modules: :mod:`~attnas.report.run_data` (reading the run folder),
:mod:`~attnas.report.sections` (one function per section), :mod:`~attnas.report.plots` (the
pictures), :mod:`~attnas.report.markup` (HTML pieces and the page), :mod:`~attnas.report.build`
(:func:`build_report`, :func:`write_report`).
"""
from attnas.report.build import ReportResult, build_report, write_report
from attnas.report.sections import SCORE_MEANING

__all__ = ["ReportResult", "SCORE_MEANING", "build_report", "write_report"]
