// The phone scenarios, through the UniFFI-generated Kotlin on the JVM:
// stream the bundled clip as Android MediaCodec and as iOS VideoToolbox
// would, with AAC, through network changes, a pause, connection cuts and
// expiring credentials; then read every frame back from the endpoint.
// A plain main: prints "N passed, N failed", exits non-zero on a failure.
// Usage: MainKt <media dir>

import java.util.concurrent.ConcurrentLinkedQueue
import java.util.concurrent.atomic.AtomicInteger
import kotlin.system.exitProcess
import kotlinx.coroutines.runBlocking
import uniffi.kvs_mobile.*

var passed = 0
var failed = 0

fun check(name: String, ok: Boolean, detail: () -> String = { "" }) {
    if (ok) {
        passed++
        println("ok   $name")
    } else {
        failed++
        println("FAIL $name: ${detail()}")
    }
}

/** Everything the producer said, and on which threads. */
class Recorder : ProducerListener {
    val acks = ConcurrentLinkedQueue<FragmentAck>()
    val threads = ConcurrentLinkedQueue<String>()
    val states = ConcurrentLinkedQueue<ConnectionState>()
    val errors = ConcurrentLinkedQueue<String>()
    val dropped = AtomicInteger()
    val stats = AtomicInteger()
    val log = ConcurrentLinkedQueue<String>()

    override fun onAck(fragment: FragmentAck, latencyMs: ULong) {
        threads.add(Thread.currentThread().name)
        log.add("ack ${fragment.producerTimestampMs}")
        acks.add(fragment)
    }

    override fun onError(code: String, retriable: Boolean, message: String) {
        threads.add(Thread.currentThread().name)
        errors.add("$code retriable=$retriable $message")
    }

    override fun onFragmentDropped(reason: String, frames: ULong) {
        log.add("dropped $frames $reason")
        dropped.incrementAndGet()
    }

    override fun onConnectionState(state: ConnectionState) {
        threads.add(Thread.currentThread().name)
        log.add("$state")
        states.add(state)
    }

    override fun onStats(stats: ProducerStats) {
        log.add("stats ${stats.bufferedFragments}")
        this.stats.incrementAndGet()
    }
}

class StaticKeys(private val id: String, private val secret: String) : CredentialsProvider {
    override fun credentials() = TemporaryCredentials(id, secret, null, null)
}

/** Temporary credentials that expire 61.5 s after each ask (counted). */
class Expiring(private val id: String, private val secret: String) : CredentialsProvider {
    val asked = AtomicInteger()
    val threads = ConcurrentLinkedQueue<String>()

    override fun credentials(): TemporaryCredentials {
        val n = asked.incrementAndGet()
        threads.add(Thread.currentThread().name)
        return TemporaryCredentials(id, secret, "token-$n", System.currentTimeMillis() + 61_500)
    }
}

data class Put(val video: Boolean, val frame: ClipFrame)

/** Video and audio in presentation order, as an encoder hands them out. */
fun interleaved(clip: TestClip): List<Put> =
    (clip.video.map { Put(true, it) } + clip.audio.map { Put(false, it) }).sortedBy { it.frame.ptsUs }

fun config(stream: String, url: String, clip: TestClip, style: EncoderStyle) = ProducerConfig(
    streamName = stream,
    region = "us-east-1",
    endpointUrl = url,
    video = VideoFormat(
        codec = VideoCodec.H264,
        width = 640u,
        height = 360u,
        // VideoToolbox: the sets are known from the format description up
        // front; MediaCodec: they come with the codec-config buffer.
        parameterSets = if (style == EncoderStyle.VIDEO_TOOLBOX) clip.parameterSets else null,
        nalFormat = if (style == EncoderStyle.VIDEO_TOOLBOX) NalFormat.AVCC else NalFormat.ANNEX_B,
    ),
    audio = AudioFormat.Aac(clip.sampleRate, clip.channels, null),
    maxBufferBytes = 0uL,
    maxBufferDurationMs = 0uL,
    createIfMissing = true,
    retentionHours = 1u,
)

/** Puts the clip at four times real time; `at(i)` runs before put i. */
fun putAll(p: KvsProducer, puts: List<Put>, at: (Int) -> Unit = {}) {
    val t0 = System.nanoTime()
    for ((i, put) in puts.withIndex()) {
        at(i)
        val due = t0 + put.frame.ptsUs * 1000 / 4
        val wait = (due - System.nanoTime()) / 1_000_000
        if (wait > 0) Thread.sleep(wait)
        if (put.video) {
            p.putVideoFrame(put.frame.data, put.frame.ptsUs, null, put.frame.key)
        } else {
            p.putAudioFrame(put.frame.data, put.frame.ptsUs)
        }
    }
}

/** Every frame read back equals what was put, per track in order. */
fun checkReadBack(case: String, url: String, stream: String, puts: List<Put>, id: String, secret: String) {
    val got = readStream(url, stream, puts.size.toULong(), 20_000uL, id, secret)
    check("$case: every frame read back", got.size == puts.size) { "${got.size} of ${puts.size}" }
    for (track in listOf(1uL, 2uL)) {
        val want = puts.filter { it.video == (track == 1uL) }.map { it.frame.stored }
        val have = got.filter { it.track == track }.sortedBy { it.ptsMs }.map { it.data }
        val same = want.size == have.size && want.indices.all { want[it].contentEquals(have[it]) }
        check("$case: track $track byte-identical", same) { "${have.size} frames, ${want.size} wanted" }
    }
}

fun phone(media: String, style: EncoderStyle, faults: List<String>, case: String) {
    val ep = TestEndpoint(faults, null, null)
    val clip = testClip(media, style)
    val puts = interleaved(clip)
    val rec = Recorder()
    val stream = "phone-${style.name.lowercase()}"
    val caller = Thread.currentThread().name
    val started = System.nanoTime()
    val p = KvsProducer(config(stream, ep.url(), clip, style), StaticKeys("test", "test"), rec)
    check("$case: the constructor returns without waiting on the network",
        (System.nanoTime() - started) < 2_000_000_000L)
    if (style == EncoderStyle.MEDIA_CODEC) {
        // The codec-config buffer, once, before the first key frame.
        p.setVideoParameterSets(clip.parameterSets)
    }
    val n = puts.size
    // The app's own events (MediaCodec case); the endpoint's cuts (faults).
    val appEvents = faults.isEmpty()
    putAll(p, puts) { i ->
        when {
            !appEvents -> {}
            i == n / 4 -> p.networkChanged()
            i == n / 2 -> p.pause()
            i == 3 * n / 4 -> p.resume()
        }
    }
    val report = runBlocking { p.finish(20_000uL) }
    check("$case: finish reports every frame delivered",
        report.deliveredFrames == n.toULong() && report.droppedFragments == 0uL && report.unacknowledgedFragments == 0uL) { "$report" }
    // finish returns once the listener has heard every event.
    check("$case: every ACK heard by the time finish returns",
        rec.acks.size.toULong() == report.deliveredFragments && rec.acks.size >= 4) {
        "${rec.acks.size} of ${report.deliveredFragments}: ${rec.acks.map { it.producerTimestampMs }} ${rec.log} ${rec.errors}"
    }
    check("$case: figures each second", rec.stats.get() >= 1) { "${rec.stats.get()}" }
    // JNA names the library's thread as it attaches it to the JVM.
    check("$case: callbacks never on the caller's thread",
        rec.threads.isNotEmpty() && rec.threads.none { it == caller }) { "${rec.threads.toSet()}" }
    if (appEvents) {
        check("$case: paused, and connected again after the network change and the pause",
            rec.states.contains(ConnectionState.PAUSED) && rec.states.count { it == ConnectionState.CONNECTED } >= 3) { "${rec.states}" }
    } else {
        check("$case: reconnected after the cuts",
            rec.states.count { it == ConnectionState.RECONNECTING } >= 1) { "${rec.states}" }
    }
    checkReadBack(case, ep.url(), stream, puts, "test", "test")
    val hls = runBlocking { p.hlsUrl(stream, true) }
    check("$case: an HLS URL on the endpoint", hls.startsWith(ep.url())) { hls }
    p.shutdown()
    p.close()
    ep.shutdown()
}

fun rulesAreTyped(media: String) {
    val ep = TestEndpoint(listOf(), null, null)
    val clip = testClip(media, EncoderStyle.VIDEO_TOOLBOX)
    val p = KvsProducer(config("rules", ep.url(), clip, EncoderStyle.VIDEO_TOOLBOX), StaticKeys("test", "test"), Recorder())
    val notKey = clip.video.first { !it.key }
    val first = try {
        p.putVideoFrame(notKey.data, 0, null, false)
        null
    } catch (e: KvsException.InvalidFrame) {
        e
    }
    check("a frame before any key frame is InvalidFrame", first != null && first.message.isNotEmpty()) { "no error" }
    val key = clip.video.first()
    p.putVideoFrame(key.data, 1_000_000, null, true)
    val back = try {
        p.putVideoFrame(clip.video[1].data, 500_000, null, false)
        null
    } catch (e: KvsException.InvalidFrame) {
        e
    }
    check("a timestamp going back is InvalidFrame", back != null) { "no error" }
    val badSets = try {
        p.setVideoParameterSets(listOf(byteArrayOf(1, 2, 3)))
        null
    } catch (e: KvsException.InvalidFrame) {
        e
    }
    check("parameter sets that do not parse are InvalidFrame", badSets != null) { "no error" }
    runBlocking { p.finish(5_000uL) }
    val after = try {
        p.putVideoFrame(key.data, 2_000_000, null, true)
        null
    } catch (e: KvsException.Finished) {
        e
    }
    check("a frame after finish is Finished", after != null) { "no error" }
    p.close()
    ep.shutdown()
}

fun expiringCredentials(media: String) {
    // The endpoint verifies every signature; the credentials expire 61.5 s
    // after each ask, so connections are replaced a minute before.
    val ep = TestEndpoint(listOf(), "AKIDPHONE", "phone/secret")
    val clip = testClip(media, EncoderStyle.VIDEO_TOOLBOX)
    val puts = interleaved(clip)
    val creds = Expiring("AKIDPHONE", "phone/secret")
    val rec = Recorder()
    val caller = Thread.currentThread().name
    val p = KvsProducer(config("expiring", ep.url(), clip, EncoderStyle.VIDEO_TOOLBOX), creds, rec)
    putAll(p, puts)
    val report = runBlocking { p.finish(20_000uL) }
    check("expiring credentials: every frame delivered", report.deliveredFrames == puts.size.toULong()) { "$report" }
    check("expiring credentials: asked again as they near expiry", creds.asked.get() >= 2) { "${creds.asked.get()}" }
    check("expiring credentials: never asked on the caller's thread",
        creds.threads.none { it == caller }) { "${creds.threads.toSet()}" }
    checkReadBack("expiring credentials", ep.url(), "expiring", puts, "AKIDPHONE", "phone/secret")
    p.close()
    ep.shutdown()
}

fun main(args: Array<String>) {
    val media = args.getOrElse(0) { "examples/media" }
    val cases = listOf(
        "MediaCodec (Annex-B, sets apart), network change, pause" to {
            phone(media, EncoderStyle.MEDIA_CODEC, listOf(), "MediaCodec")
        },
        "VideoToolbox (AVCC), connections cut at 300 kB" to {
            phone(media, EncoderStyle.VIDEO_TOOLBOX, listOf("drop-after-bytes=300000"), "VideoToolbox")
        },
        "typed errors" to { rulesAreTyped(media) },
        "expiring credentials" to { expiringCredentials(media) },
    )
    for ((name, run) in cases) {
        try {
            run()
        } catch (e: Throwable) {
            failed++
            println("FAIL $name: ${e::class.simpleName}: ${e.message}")
        }
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
