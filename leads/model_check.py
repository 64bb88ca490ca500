"""Scoring model check: does the lead score separate won from lost deals?

- Score distributions of won vs lost leads (buckets computed in SQL).
- Each rule's lift: the share of won leads it fired for divided by the share of lost leads it
  fired for (with +0.5/+1 smoothing so small counts do not explode). Above 1 the rule points at
  winners; below 1 it rewards behaviour of losers.
- A suggested hot threshold: the score that maximises Youden's J (true-positive rate minus
  false-positive rate) when "score ≥ t" predicts "won"; F1 is shown beside it.
"""

from __future__ import annotations

from django.db import connection
from django.utils.translation import gettext as _

from leads import charts
from leads.models import TemperatureSettings

# Won and lost leads each before the check advises anything (a threshold, "worth more points?"):
# with 5 and 5 one lead moves a rate by 20 points and a lift of 4× is noise (1 of 5 vs 0 of 5 with
# the smoothing below gives 3×); at 20 each one lead moves a rate by 5 points.
MIN_EVIDENCE = 20
LIFT_HIGH = 1.5
LIFT_LOW = 0.67

_COUNTS_SQL = """
SELECT count(*) FILTER (WHERE lead_status = 'won'), count(*) FILTER (WHERE lead_status = 'lost'),
       min(score), max(score)
FROM contacts_contact WHERE lead_status IN ('won', 'lost')
"""
_CUMULATIVE_SQL = """
WITH per_score AS (
    SELECT score, count(*) FILTER (WHERE lead_status = 'won') AS won, count(*) FILTER (WHERE lead_status = 'lost') AS lost
    FROM contacts_contact WHERE lead_status IN ('won', 'lost') GROUP BY score
)
SELECT score, sum(won) OVER (ORDER BY score DESC), sum(lost) OVER (ORDER BY score DESC)
FROM per_score ORDER BY score DESC
"""
_BUCKETS_SQL = """
SELECT (floor((score - %(low)s) / %(width)s::numeric) * %(width)s + %(low)s)::int AS bucket,
       count(*) FILTER (WHERE lead_status = 'won'), count(*) FILTER (WHERE lead_status = 'lost')
FROM contacts_contact WHERE lead_status IN ('won', 'lost')
GROUP BY 1 ORDER BY 1
"""
_LIFT_SQL = """
SELECT r.id, r.name, r.active,
       count(DISTINCT a.contact_id) FILTER (WHERE c.lead_status = 'won') AS won,
       count(DISTINCT a.contact_id) FILTER (WHERE c.lead_status = 'lost') AS lost,
       coalesce(sum(a.points), 0) AS points
FROM contacts_contact c
JOIN automation_ruleapplication a ON a.contact_id = c.id
JOIN automation_rule r ON r.id = a.rule_id
WHERE c.lead_status IN ('won', 'lost')
GROUP BY r.id, r.name, r.active
ORDER BY r.name
"""


def evidence_shortfall(won_total: int, lost_total: int) -> str:
    """Why the check gives no advice yet ("" when there is enough evidence)."""
    won_missing, lost_missing = MIN_EVIDENCE - won_total, MIN_EVIDENCE - lost_total
    if won_missing > 0 and lost_missing > 0:
        todo = _("Mark %(won)s more won and %(lost)s more lost on the Hot leads page.") % {
            "won": won_missing, "lost": lost_missing}
    elif won_missing > 0:
        todo = _("Mark %(won)s more won on the Hot leads page.") % {"won": won_missing}
    elif lost_missing > 0:
        todo = _("Mark %(lost)s more lost on the Hot leads page.") % {"lost": lost_missing}
    else:
        return ""
    return _("No advice yet: it takes at least %(min)s won and %(min)s lost leads, and there are %(won)s won and "
             "%(lost)s lost. With fewer, one lead more or less swings every rate and lift, so a suggested threshold "
             "or a verdict on a rule would be noise.") % {"min": MIN_EVIDENCE, "won": won_total, "lost": lost_total} \
        + " " + todo


def rule_reading(lift: float, *, enough_evidence: bool) -> str:
    """``"winners"``, ``"losers"``, ``"none"`` (no clear signal) or ``"unknown"`` (too little evidence)."""
    if not enough_evidence:
        return "unknown"
    if lift >= LIFT_HIGH:
        return "winners"
    if lift <= LIFT_LOW:
        return "losers"
    return "none"


def threshold_suggestion(cumulative: list[tuple[int, int, int]], won_total: int, lost_total: int) -> dict | None:
    """Best "score ≥ t ⇒ won" cut-off by Youden's J over the distinct scores (not contacts);
    None below MIN_EVIDENCE won or lost leads."""
    if won_total < MIN_EVIDENCE or lost_total < MIN_EVIDENCE:
        return None
    best: dict | None = None
    for score, true_positives, false_positives in cumulative:
        tpr = true_positives / won_total
        fpr = false_positives / lost_total
        precision = true_positives / (true_positives + false_positives) if true_positives + false_positives else 0.0
        f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr else 0.0
        candidate = {"threshold": int(score), "j": tpr - fpr, "tpr": tpr, "fpr": fpr, "precision": precision, "f1": f1}
        if best is None or candidate["j"] > best["j"] or (candidate["j"] == best["j"] and candidate["f1"] > best["f1"]):
            best = candidate
    return best


def threshold_quality(cumulative: list[tuple[int, int, int]], won_total: int, lost_total: int, threshold: int) -> dict:
    """How the current hot threshold classifies won/lost leads."""
    true_positives = false_positives = 0
    for score, tp, fp in cumulative:  # descending score
        if score >= threshold:
            true_positives, false_positives = tp, fp
    tpr = true_positives / won_total if won_total else 0.0
    fpr = false_positives / lost_total if lost_total else 0.0
    precision = true_positives / (true_positives + false_positives) if true_positives + false_positives else 0.0
    f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr else 0.0
    return {"threshold": threshold, "j": tpr - fpr, "tpr": tpr, "fpr": fpr, "precision": precision, "f1": f1}


def model_check_context() -> dict:
    thresholds = TemperatureSettings.current()
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_SQL)
        won_total, lost_total, low, high = cursor.fetchone()
        cursor.execute(_CUMULATIVE_SQL)
        cumulative = [(int(s), int(tp), int(fp)) for s, tp, fp in cursor.fetchall()]
        buckets = []
        if won_total + lost_total:
            width = max(1, -(-(high - low + 1) // 20))
            cursor.execute(_BUCKETS_SQL, {"low": low, "width": width})
            buckets = [(bucket, bucket + width, won, lost) for bucket, won, lost in cursor.fetchall()]
        cursor.execute(_LIFT_SQL)
        lift_rows = cursor.fetchall()
    shortfall = evidence_shortfall(won_total, lost_total)
    rules = []
    for rule_id, name, active, won, lost, points in lift_rows:
        won_rate = (won + 0.5) / (won_total + 1)
        lost_rate = (lost + 0.5) / (lost_total + 1)
        rules.append(
            {
                "id": rule_id, "name": name, "active": active, "won": won, "lost": lost, "points": points,
                "won_share": won / won_total if won_total else 0.0,
                "lost_share": lost / lost_total if lost_total else 0.0,
                "lift": won_rate / lost_rate,
                "reading": rule_reading(won_rate / lost_rate, enough_evidence=not shortfall),
            }
        )
    rules.sort(key=lambda rule: -rule["lift"])
    suggestion = threshold_suggestion(cumulative, won_total, lost_total)
    current = threshold_quality(cumulative, won_total, lost_total, thresholds.hot) if won_total + lost_total else None
    figure = charts.won_lost_buckets(buckets, hot=thresholds.hot, suggested=suggestion["threshold"] if suggestion else None) if buckets else None
    return {
        "won_total": won_total,
        "lost_total": lost_total,
        "rules": rules,
        "suggestion": suggestion,
        "current": current,
        "thresholds": thresholds,
        "figure": figure,
        "min_evidence": MIN_EVIDENCE,
        "shortfall": shortfall,
    }
