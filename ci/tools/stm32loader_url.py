#!/usr/bin/env python3
"""Run stm32loader with a pyserial URL as its port, e.g. the twin's rfc2217://127.0.0.1:PORT.

stm32loader (0.7.1) opens its port with ``serial.Serial(port=...)``, which takes device paths
only; pyserial opens URLs (``rfc2217://``, ``socket://``) with ``serial.serial_for_url``. This
makes stm32loader's own SerialConnection open the port with ``serial_for_url`` and then runs
stm32loader's own ``main`` on the arguments, unchanged: the same options, the same reset and
BOOT0 sequence on DTR/RTS, the same protocol code.

    python3 ci/tools/stm32loader_url.py -p rfc2217://127.0.0.1:2217 -f F4 -e -w -v app.bin
"""

import sys

import serial
import stm32loader.main
import stm32loader.uart


class _UrlSerial:
    """Stands in for the ``serial`` module inside stm32loader.uart."""

    def __getattr__(self, name):
        return getattr(serial, name)

    @staticmethod
    def Serial(port, **settings):  # noqa: N802 (pyserial's name)
        return serial.serial_for_url(port, **settings)


stm32loader.uart.serial = _UrlSerial()

if __name__ == "__main__":
    stm32loader.main.main(*sys.argv[1:])
