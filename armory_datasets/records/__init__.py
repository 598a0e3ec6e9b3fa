"""Records: one per (chain, sample), built once per batch as Arrow columns.

``names`` is the one naming rule; ``builder`` builds a batch's record columns;
``selection`` evaluates a criterion on them.

Example:
    >>> from armory_datasets.records.names import check_name
    >>> check_name("benign", "chain")
    'benign'
"""
