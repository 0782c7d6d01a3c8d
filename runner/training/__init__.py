"""Training classifiers of your own: Gaia's workflow (groundtruth + filelist -> SVM search)
done with scikit-learn, exported as ONNX that the onnx-classifier model family runs.

groundtruth.py: Gaia's groundtruth and filelist YAML, and ``path,label`` CSV, read and checked.
features.py: results (or audio, analysed first) -> a feature matrix, gaps reported.
search.py: preprocessing x classifier search by stratified k-fold, balanced accuracy, refit.
export.py: the fitted pipeline as ONNX + MTG-style metadata JSON (never a pickle).
evaluate.py: a trained model scored on new labelled files.
commands.py: `extractor train`, `extractor evaluate` (and `extractor models add`'s work).
"""
