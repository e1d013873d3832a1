"""Synthetic landing data for the compliance platform: a deterministic, scalable generator of
financial transactions with labelled anomaly scenarios and injected data-quality defects.

Landing layout written per day D (under the landing root):
  reference/<table>/<D>.csv                       kyc_profiles, account_limits, watchlists, fx_rates, merchant_profiles
  transactions/event_date=<D>/part-NNNNN.jsonl   the stream (rows_per_file lines each), then _manifest.json, then _SUCCESS
  system_of_record/<D>.csv                       every transaction generated for D once, with its true values: D's own
                                                 (also those missing from the stream) and the late arrivals delivered on D
  outcomes/<D>.csv                               confirmed investigator labels (1 = suspicious, 0 = legitimate)
  truth/<D>.csv                                  one row per stream line (file as bronze's source_file, e.g.
                                                 event_date=<D>/part-00000.jsonl, 1-based line, transaction_id, event_date,
                                                 scenario, defect), plus one row per transaction missing from the
                                                 stream (file and line empty, defect missing_from_stream)

Usage: ``generate_day(SynthConfig(seed=7, events_per_day=100_000), Path("lake/landing"), date(2026, 3, 2))``
or the ``compliance-synth`` command.
"""

from compliance_assets.synthetic.config import DEFECT_KINDS, SCENARIOS, SynthConfig
from compliance_assets.synthetic.writer import DaySummary, generate_day, generate_days

__all__ = ["DEFECT_KINDS", "SCENARIOS", "DaySummary", "SynthConfig", "generate_day", "generate_days"]
