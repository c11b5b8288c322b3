// AudioWorklet: microphone float samples → little-endian PCM16 chunks of ~100 ms, posted to the page.
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = new Int16Array(Math.round(sampleRate / 10));
    this.fill = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.chunk[this.fill++] = Math.round(s * 32767);
        if (this.fill === this.chunk.length) {
          this.port.postMessage(this.chunk.slice().buffer);
          this.fill = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("pcm-capture", PcmCapture);
