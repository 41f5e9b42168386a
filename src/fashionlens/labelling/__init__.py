"""Label your own photos: a keyboard-first labelling page writing the multi-label format.

``fashionlens label PHOTOS_DIR --labels LABELS.txt --out LABELS.csv [--model MODEL]`` serves the
page (``app.py``); ``store.py`` keeps the CSV equal to what was labelled after every save;
``photos.py`` finds and safely reads the photos; ``suggest.py`` turns a model's scores into
pre-selected labels and an uncertainty order; ``labelstudio.py`` is the Label Studio interop.
"""
