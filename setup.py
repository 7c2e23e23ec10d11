"""The one native module (backend/chat/_token_pipe.c: the token relay's hot path), built by `pip install` with the
platform's default flags for any CPU of the architecture: never for "this CPU" (the next machine may differ)."""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_HOST_ONLY = ("-march=native", "-mtune=native", "-mcpu=native")


class PortableBuildExt(build_ext):
    """Drops any host-only flag an interpreter's own build settings might carry."""

    def build_extensions(self) -> None:
        for attribute in ("compiler_so", "compiler", "linker_so"):
            command = getattr(self.compiler, attribute, None)
            if command:
                setattr(self.compiler, attribute, [flag for flag in command if flag not in _HOST_ONLY])
        super().build_extensions()


setup(
    ext_modules=[Extension("backend.chat._token_pipe", ["backend/chat/_token_pipe.c"], extra_compile_args=["-O2"])],
    cmdclass={"build_ext": PortableBuildExt},
)
