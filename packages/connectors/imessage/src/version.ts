/** This package's version, stamped on every record as `source.version`. Kept equal to package.json by a test. */
export const PACKAGE_VERSION = '0.1.0';
