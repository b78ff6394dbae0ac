/** This package's version (checked against package.json by a test). */
export const SIGNAL_PACKAGE_VERSION = '0.1.0';
/** The exact libsignal-client version this package is pinned to (checked by a test). */
export const LIBSIGNAL_VERSION = '0.103.0';
