// The text the page shows. The browser test rewrites this file while the page is open and
// expects the new text to arrive through hot module replacement.
export const message = 'Hello from the preview';
