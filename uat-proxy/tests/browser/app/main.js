import { message } from './message.js';

function render(text) {
  document.getElementById('message').textContent = text;
}

render(message);
document.getElementById('origin').textContent = `Served at ${location.host}`;

// Accept updates of the message module in place, so an edit shows without a page reload.
if (import.meta.hot) {
  import.meta.hot.accept('./message.js', (updated) => {
    if (updated) render(updated.message);
  });
}
