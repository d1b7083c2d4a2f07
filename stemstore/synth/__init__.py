"""A synthetic multitrack corpus in MedleyDB's layout, with known mixing.

There is no real audio on the machines this project is developed and tested on, and a test of
stem-processing research needs multitracks whose raw -> stem transformation is *known*.
:func:`synthesize_corpus` writes such a corpus::

    <root>/Synth001_Amber/
        Synth001_Amber_METADATA.yaml      MedleyDB schema (artist, title, genre, stems, ...)
        Synth001_Amber_MIXING.json        ground truth: song plan, microphones, stem chains
        Synth001_Amber_MIX.wav            sum of the stems (times one recorded mix-bus gain)
        Synth001_Amber_STEMS/Synth001_Amber_STEM_01.wav ...
        Synth001_Amber_RAW/Synth001_Amber_RAW_01_01.wav ...

All audio is mono, 24-bit PCM WAV, at ``sample_rate`` (44.1 kHz by default).

How a multitrack is made:

1. **Structure.** Which stems a multitrack has, their instruments and how many raw tracks each
   stem has, come from a real MedleyDB multitrack, restricted to the four default instrument
   groups (:data:`DEFAULT_GROUPS`). The structures travel inside the package as
   ``stemstore/data/medleydb_structures.json``; :func:`derive_structures` recomputes them from
   MedleyDB metadata files (used once, to write that file, and by the tests to check it).
2. **Song.** One tempo, key, chord progression, melody and per-bar energy per multitrack, so
   the parts are musically related.
3. **Performance.** Each stem gets a part (bass line, strums, chords, melody, rap) rendered by an
   instrument voice: Karplus-Strong plucked strings (bass, guitars, banjo), additive piano,
   FM electric piano, detuned-saw synthesizers, formant-synthesised voices.
4. **Raw tracks.** Each raw track records the performance through a "microphone" (DI, close
   mic, amp mic, room mic): its own delay, filtering, saturation, share of the room's reverb
   (one room per multitrack, pedalboard.Reverb), noise floor and level. Vocal raws are
   separate takes (doubles, sometimes a harmony) rather than extra microphones.
5. **Stem.** ``stem = chain(sum_i gain_i * raw_i)`` where ``chain`` is a pedalboard chain
   typical of the instrument group (trim, EQ, compression, distortion, de-essing, makeup,
   fader) with parameters drawn from the seed. The raws summed are the *written* (24-bit
   quantised) raws, so ``render_stem`` on the files reproduces the stem.

The chain of every stem, with all parameters, is written to ``<Artist>_<Title>_MIXING.json``
(one file per multitrack, beside the METADATA file); :func:`chain_from_spec` turns a chain spec
back into a ``pedalboard.Pedalboard``.

Everything is deterministic for a seed: same arguments, byte-identical files (on one machine
and software stack: float32 maths may round differently on other CPUs or numpy builds). Each
multitrack draws from its own child of ``numpy.random.SeedSequence(seed)``, so multitracks may
be made in parallel processes without changing the result.

Regenerate the shipped structures with
``python -m stemstore.synth.structures <MedleyDB metadata dir>`` (the installed package never reads it).
"""
