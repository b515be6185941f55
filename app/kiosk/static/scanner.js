// QR codes through the camera with the browser's BarcodeDetector, where there is one.

const SCAN_EVERY_MS = 250;

/** Whether this browser can read QR codes from a camera. */
export async function canScan() {
  if (!("BarcodeDetector" in window) || !navigator.mediaDevices?.getUserMedia) return false;
  try {
    return (await BarcodeDetector.getSupportedFormats()).includes("qr_code");
  } catch {
    return false;
  }
}

/**
 * Show the camera in `video` and call `onCode(text)` with the first QR code read; resolves to
 * a function that stops the camera (called by itself once a code is read).
 */
export async function startScan(video, onCode) {
  const detector = new BarcodeDetector({ formats: ["qr_code"] });
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { facingMode: "environment" }, audio: false,
  });
  let timer = null;
  const stop = () => {
    clearTimeout(timer);
    timer = null;
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
    video.hidden = true;
  };
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  const tick = async () => {
    try {
      const found = await detector.detect(video);
      if (timer === null) return;
      const text = found.find((b) => b.rawValue)?.rawValue;
      if (text) {
        stop();
        onCode(text);
        return;
      }
    } catch { /* a frame that could not be read: try the next */ }
    if (timer !== null) timer = setTimeout(tick, SCAN_EVERY_MS);
  };
  timer = setTimeout(tick, SCAN_EVERY_MS);
  return stop;
}
