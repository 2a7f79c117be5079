"""Stage 4: matching behaviour — PN wildcards and case, DA/TM ranges, list matching.

Every probe is derived from data the PACS itself returned and is restricted to one patient (by
Patient ID) or one study, so its expected answer is known exactly and the probe stays cheap.
Importing this package registers nothing: the registry imports match.wildcards, match.ranges
and match.lists by name when a run selects them, and runs them in the catalog's order.
"""
