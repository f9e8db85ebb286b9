// The product's name and version, in one place: the CLI prints them and the version
// module (XEP-0092) reports them.

/** Product name. */
export const LILT_NAME = "Lilt";

/** Product version (semantic versioning). */
export const LILT_VERSION = "0.1.0";
