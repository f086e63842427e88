"""Run by tests/test_quicknet.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import json
import larq_zoo as lqz

out = {}
for name, build in (("quicknet", lqz.sota.QuickNet), ("quicknet_small", lqz.sota.QuickNetSmall),
                    ("quicknet_large", lqz.sota.QuickNetLarge)):
    model = build(weights=None)
    out[name] = {"params": model.count_params(),
                 "layers": [[type(l).__name__, l.count_params(), list(l.output_shape[1:])]
                            for l in model.layers if l.count_params()],
                 "trainable": sum(int(w.shape.num_elements()) for w in model.trainable_weights)}
print("ZOO " + json.dumps(out))
