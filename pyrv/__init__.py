"""pyrv: the Linux kernel's Runtime Verification subsystem in user space.

Realms, as in the kernel:

- :mod:`pyrv.models`   formal realm: automata and the files that describe them;
- :mod:`pyrv.monitors` verification realm: monitor instances, hook tables, reactors,
  and the registry behind the ``rv/`` control files;
- :mod:`pyrv.sources`  Linux realm: trace input (ftrace text) turned into a stream of events;
- :mod:`pyrv.cli`      the ``pyrv`` command; :mod:`pyrv.api` the Python entry points.
"""

__version__ = "0.1.0"
