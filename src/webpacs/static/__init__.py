"""Static DICOMweb trees: write, update, serve, deploy and read back.

The layout is the one static-wado writes and OHIF reads (paths relative to the tree root)::

    studies/index.json.gz                                   QIDO study rows (all studies)
    studies/<S>/index.json.gz                               [study row]
    studies/<S>/series/index.json.gz                        QIDO series rows of <S>
    studies/<S>/series/<X>/series-singleton.json.gz         [series row]
    studies/<S>/series/<X>/metadata.gz                      series metadata (JSON array)
    studies/<S>/series/<X>/instances/index.json.gz          QIDO instance rows of <X>
    studies/<S>/series/<X>/instances/<I>/metadata.gz        [instance metadata]
    studies/<S>/series/<X>/instances/<I>/frames/<n>.mht     one-part multipart (compressed)
    studies/<S>/series/<X>/instances/<I>/frames/<n>.mht.gz  the same, gzip'd (native)
    studies/<S>/bulkdata/<h[0:2]>/<h[2:4]>/<h[4:]>.mht.gz   bulk value, h = sha256(value)

webpacs additions (ignored by OHIF): ``instances/<I>/fragments.json`` (how the frames of an
encapsulated instance were split into fragments, so ``export`` rebuilds the pixel data byte
for byte), ``studies/<S>/deduplicated/`` (the ``--dedup`` form, see :mod:`.dedup`) and
``.webpacs-static.json`` (the change-feed position of the last build).

Every ``BulkDataURI`` is relative to the metadata file that holds it; PixelData points at the
instance's ``frames`` directory. Every file is written to a temporary file and renamed into
place, so a reader never sees half a file.
"""
