"""The course lab: code tasks in which the learner writes a mechanism of the series (the key, the
boosted upload, norm clipping, ...) and checks it against fmlbd's own (:mod:`fmlbd.lab.tasks`;
the checks' machinery: :mod:`fmlbd.lab.grading`)."""
