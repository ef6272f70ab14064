"""The enrolled gallery: its files on disk (``store``), enrolment (``enrol``) and the command line
(``python -m edge.gallery``). Importing the package loads nothing."""
