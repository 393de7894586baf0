"""SGLang's HTTP API over real HTTP: the server's code on the fake engine with two ranks
(a spawned follower process)."""
import gzip
import json
import os
import shutil
import socket
import tempfile
import unittest

from tests import util
from gpuserver.client import Load, parse_metrics, request


class API(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = util.InProcessServer("--tp", "2", "--enable-metrics", "--slow-rank", "1")
        cls.base = cls.srv.base
        cls.tmp = tempfile.mkdtemp(prefix="gpuserver-http-")

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_detect_fields(self):
        # What torchprof/serverprof reads: a JSON object with tp_size/model_path (SGLang),
        # and /v1/models owned_by sglang.
        r = request(self.base + "/get_server_info")
        self.assertEqual(r.status, 200)
        info = r.json()
        self.assertEqual((info["tp_size"], info["dp_size"], info["pp_size"]), (2, 1, 1))
        self.assertEqual(info["model_path"], "nsys-agent/random-llama")
        self.assertEqual(len(info["nsys_agent_gpuserver"]["ranks"]), 2)
        self.assertNotEqual(info["nsys_agent_gpuserver"]["ranks"][0]["pid"],
                            info["nsys_agent_gpuserver"]["ranks"][1]["pid"])
        self.assertIn("forward_ct", info["internal_states"][0])
        self.assertEqual(request(self.base + "/v1/models").json()["data"][0]["owned_by"], "sglang")
        self.assertEqual(request(self.base + "/server_info").status, 200)

    def test_not_found_and_methods(self):
        cases = [("/end_profile", "POST", 404, {"detail": "Not Found"}),
                 ("/nope", "GET", 404, {"detail": "Not Found"}),
                 ("/v1/completions", "GET", 405, {"detail": "Method Not Allowed"}),
                 ("/get_server_info", "POST", 405, {"detail": "Method Not Allowed"})]
        for path, method, status, body in cases:
            with self.subTest(path=path, method=method):
                r = request(self.base + path, method)
                self.assertEqual((r.status, r.json()), (status, body))

    def test_health(self):
        self.assertEqual(request(self.base + "/health").status, 200)
        self.assertEqual(request(self.base + "/health_generate").status, 200)

    def test_completions(self):
        r = request(self.base + "/v1/completions", "POST", {"prompt": "hello", "max_tokens": 6, "ignore_eos": True})
        j = r.json()
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(j["object"], "text_completion")
        self.assertEqual(j["usage"], {"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12})
        self.assertEqual(len(j["choices"][0]["text"]), 6)
        r = request(self.base + "/v1/completions", "POST", {"prompt": [[1, 5, 6], [1, 7]], "max_tokens": 2,
                                                            "ignore_eos": True})
        self.assertEqual(len(r.json()["choices"]), 2)

    def test_completion_errors(self):
        cases = [{"prompt": ""}, {"prompt": "x", "max_tokens": 0}, {"prompt": "x", "stream": True},
                 {"prompt": [1, 10 ** 9]}, {"prompt": "x", "max_tokens": 10 ** 6}, {"prompt": "x", "n": 2},
                 {"prompt": "x", "max_tokens": True}]
        for body in cases:
            with self.subTest(body=body):
                r = request(self.base + "/v1/completions", "POST", body)
                self.assertEqual(r.status, 400, r.text)
                self.assertEqual(r.json()["object"], "error")

    def test_bad_json(self):
        import urllib.request
        req = urllib.request.Request(self.base + "/start_profile", data=b"{nope", method="POST")
        try:
            urllib.request.urlopen(req, timeout=10)
            self.fail("accepted")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 422)

    def test_generate_ids(self):
        r = request(self.base + "/generate", "POST", {"input_ids": [1, 40, 41],
                                                     "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}})
        j = r.json()
        self.assertEqual(len(j["output_ids"]), 4)
        self.assertEqual(j["meta_info"]["finish_reason"], {"type": "length", "length": 4})

    def test_profile_window_under_load(self):
        d = os.path.join(self.tmp, "w1")
        load = Load(self.base, concurrency=2, max_tokens=16).start()

        def ct():
            return request(self.base + "/get_server_info").json()["internal_states"][0]["forward_ct"]
        try:
            r = request(self.base + "/start_profile", "POST", {"output_dir": d, "activities": ["CPU", "GPU"],
                                                              "profile_prefix": "t"})
            self.assertEqual((r.status, r.text), (200, "Start profiling.\n"))
            r = request(self.base + "/start_profile", "GET")
            self.assertEqual((r.status, r.text), (500, "Profiling is already in progress. Call /stop_profile first."))
            ct0 = ct()
            self.assertTrue(util.wait_for(lambda: ct() > ct0 + 20))
            r = request(self.base + "/stop_profile", "POST")
            self.assertEqual((r.status, r.text), (200, "Stop profiling. This will take some time.\n"))
        finally:
            snap = load.stop()
        self.assertEqual(snap["errors"], 0)
        names = sorted(os.listdir(d))
        self.assertEqual(len(names), 2, names)
        for rank, n in enumerate(names):
            self.assertRegex(n, r"^t-[0-9]+\.[0-9]+-TP-%d\.trace\.json\.gz$" % rank)
            with gzip.open(os.path.join(d, n), "rt") as f:
                data = json.load(f)
            self.assertTrue(data["fakeEngine"])
            self.assertGreater(len(data["traceEvents"]), 10)
        # Both ranks recorded the same profile id, at the same step boundary.
        self.assertEqual(len({n.split("-TP-")[0] for n in names}), 1)
        text = self.srv.text()
        self.assertIn("Profiling done. Traces are saved to: %s" % d, text)
        r = request(self.base + "/stop_profile", "POST")
        self.assertEqual((r.status, r.text), (500, "Profiling is not in progress. Call /start_profile first."))

    def test_metrics(self):
        request(self.base + "/v1/completions", "POST", {"prompt": "m", "max_tokens": 3, "ignore_eos": True})
        r = request(self.base + "/metrics")
        self.assertEqual(r.status, 200)
        m = parse_metrics(r.text)
        self.assertGreaterEqual(m["sglang:generation_tokens_total"], 3)
        self.assertIn("sglang:gen_throughput", m)
        self.assertRegex(r.text, r'sglang:gen_throughput\{engine_type="unified",model_name="[^"]+",pp_rank="0",'
                                 r'tp_rank="0"\} [0-9.]+')

    def test_stats_per_rank(self):
        request(self.base + "/v1/completions", "POST", {"prompt": "s", "max_tokens": 3, "ignore_eos": True})
        st = request(self.base + "/gpuserver/stats").json()
        self.assertEqual([s["tp_rank"] for s in st["ranks"]], [0, 1])
        self.assertEqual(st["ranks"][0]["slow_work"], 0)
        self.assertGreater(st["ranks"][1]["slow_work"], 0)

    def test_oversized_body(self):
        s = socket.create_connection(("127.0.0.1", int(self.base.rsplit(":", 1)[1])), timeout=10)
        s.sendall(b"POST /start_profile HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        head = s.recv(4096).decode()
        s.close()
        self.assertTrue(head.startswith("HTTP/1.1 413"), head)


class NoMetrics(unittest.TestCase):
    def test_metrics_off_by_default(self):
        srv = util.InProcessServer()
        try:
            self.assertEqual(request(srv.base + "/metrics").status, 404)
            # One rank: SGLang logs without a TP tag then (checked in the log prefix).
            self.assertEqual(request(srv.base + "/get_server_info").json()["tp_size"], 1)
        finally:
            srv.close()


if __name__ == "__main__":
    unittest.main()
