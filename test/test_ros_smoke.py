"""rclpy works here: two processes exchange sensor_msgs/Image over loopback in this test's ROS domain."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("rclpy")

PUB = textwrap.dedent("""
    import time, numpy as np, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node("smoke_pub")
    pub = node.create_publisher(Image, "smoke/image", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    t_end = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0 and time.monotonic() < t_end:
        rclpy.spin_once(node, timeout_sec=0.05)
    for i in range(20):
        img = np.full((48, 64, 3), i, np.uint8)
        img[:, :, 1] = np.arange(64, dtype=np.uint8)[None, :]
        msg = Image(height=48, width=64, encoding="rgb8", is_bigendian=0, step=64 * 3)
        msg.header.frame_id = "cam_optical"
        msg.header.stamp.sec = 1000 + i
        msg.data = img.tobytes()
        pub.publish(msg)
        time.sleep(0.05)
    time.sleep(1.0)
    node.destroy_node(); rclpy.shutdown()
""")

SUB = textwrap.dedent("""
    import time, numpy as np, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node("smoke_sub")
    got = []
    node.create_subscription(Image, "smoke/image", got.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    t_end = time.monotonic() + 25.0
    while len(got) < 20 and time.monotonic() < t_end:
        rclpy.spin_once(node, timeout_sec=0.05)
    for m in got:
        a = np.frombuffer(m.data, np.uint8).reshape(m.height, m.width, 3)
        i = m.header.stamp.sec - 1000
        assert m.header.frame_id == "cam_optical" and m.encoding == "rgb8"
        assert (a[:, :, 0] == i).all() and (a[0, :, 1] == np.arange(64)).all()
    print("RECEIVED", len(got), sorted(m.header.stamp.sec - 1000 for m in got))
    node.destroy_node(); rclpy.shutdown()
""")


def test_two_processes_exchange_images_on_loopback(ros_env):
    assert ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    sub = subprocess.Popen([sys.executable, "-c", SUB], env=ros_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    pub = subprocess.Popen([sys.executable, "-c", PUB], env=ros_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        sub_out, sub_err = sub.communicate(timeout=60)
        pub_out, pub_err = pub.communicate(timeout=60)
    finally:
        for p in (sub, pub):
            if p.poll() is None:
                p.kill()
    assert pub.returncode == 0, pub_err[-2000:]
    assert sub.returncode == 0, sub_err[-2000:]
    assert "RECEIVED 20 " in sub_out, sub_out + sub_err[-2000:]


def test_other_domain_receives_nothing(ros_env):
    """Domain isolation is what keeps concurrently running tests apart."""
    other = dict(ros_env, ROS_DOMAIN_ID=str((int(ros_env["ROS_DOMAIN_ID"]) % 100) + 1))
    sub_code = SUB.replace("t_end = time.monotonic() + 25.0", "t_end = time.monotonic() + 4.0")
    pub_code = PUB.replace("+ 20.0", "+ 4.0")
    sub = subprocess.Popen([sys.executable, "-c", sub_code], env=other, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    pub = subprocess.Popen([sys.executable, "-c", pub_code], env=ros_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    sub_out, _ = sub.communicate(timeout=60)
    pub.communicate(timeout=60)
    assert "RECEIVED 0 " in sub_out, sub_out
