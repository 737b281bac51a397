"""goldsmith build machinery: engine, communicators, provisioners, builders and the dynamic providers.

Nothing heavy is imported here: the dynamic providers are pickled by reference and unpickled in
the provider process, which then imports only what each call needs.
"""

__version__ = "0.1.0"
