"""The Markdown table the pipeline benchmarks print: rate, peak memory, and ratios to the floor and a peer.

Example:
    >>> print(ratio_table({"floor": {"rate": 10.0, "peak_rss_mb": 50}, "ours": {"rate": 5.0, "peak_rss_mb": 80}},
    ...                   {"floor": "floor", "ours": "ours"}, "items/s", "floor", "floor"))  # doctest: +NORMALIZE_WHITESPACE
    | pipeline | items/s | peak RSS MB | x floor | x floor |
    |----------|---------|-------------|---------|---------|
    | floor    |   10.00 |          50 |    1.00 |    1.00 |
    | ours     |    5.00 |          80 |    0.50 |    0.50 |
"""


def ratio_table(results, labels, unit, floor_key, peer_key, peer_name=None, rate_key="rate", digits=2):
    """Rows for `labels` (result key -> row label) with `results[key][rate_key]` and its ratios.

    Args:
        results: key -> {rate_key: float, "peak_rss_mb": float} or {"skipped": reason}.
        labels: the rows, in order: result key -> label.
        unit: the rate column's header, e.g. "cases/s".
        floor_key, peer_key: the keys the ratios are taken against.
        peer_name: the peer's column name (default: its key).
        rate_key: the key of the rate in each result.
        digits: decimals of the ratios.
    """
    floor = results.get(floor_key, {}).get(rate_key)
    peer = results.get(peer_key, {}).get(rate_key)
    peer_name = peer_name or peer_key
    label_width = max(len("pipeline"), *(len(label) for label in labels.values()))
    header = ["pipeline".ljust(label_width), unit, "peak RSS MB", f"x {floor_key}", f"x {peer_name}"]
    widths = [len(h) for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for key, label in labels.items():
        row = results.get(key)
        if row is None:
            continue
        if "skipped" in row:
            lines.append(f"| {label.ljust(label_width)} | skipped: {row['skipped']}")
            continue
        rate = row[rate_key]
        cells = [label.ljust(label_width), f"{rate:.2f}", f"{row['peak_rss_mb']:.0f}",
                 f"{rate / floor:.{digits}f}" if floor else "-", f"{rate / peer:.{digits}f}" if peer else "-"]
        lines.append("| " + " | ".join(cell.rjust(w) if i else cell for i, (cell, w) in enumerate(zip(cells, widths)))
                     + " |")
    return "\n".join(lines)
