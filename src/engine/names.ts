/** Kernel names: what the wire, the schemas and the engine all accept. */
export const KERNEL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
