// Dev server of the preview fixture, reached only through the preview proxy at
// http://<session>.localhost:<proxy port>/.
export default {
  // Keep Vite's dependency cache inside the temporary copy the test runs from.
  cacheDir: '.vite',
  clearScreen: false,
  server: {
    // The proxy forwards the browser's Host (<session>.localhost:<proxy port>).
    allowedHosts: true,
    // No fixed HMR port: Vite's client then opens its WebSocket on the page's own host and
    // port, i.e. through the proxy. The test checks that it did.
    hmr: { overlay: false },
  },
};
