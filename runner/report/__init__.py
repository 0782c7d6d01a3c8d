"""The library report: a folder of per-track outputs -> one self-contained HTML page.

loading (read the folder, skip what is damaged) -> tracks (one track's values, whatever the
profile) -> data (the sections as plain data) -> charts (Vega-Lite specs) -> html (the page)
-> build (the whole run) -> commands (`extractor report`).
"""
