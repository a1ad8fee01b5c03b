"""The MuJoCo D'Claw behind the bus emulator: joint angles in, goals out, in joint units (rad).

Claw motors drive the model's own position actuators (data.ctrl, kp = 2 N·m/rad); torque off
zeroes an actuator's gain and bias (restored from a copy on torque on), so the joint goes limp.
The valve (motor 50) has no actuator in ROBEL's model: with its torque on a PD torque on the valve
joint (data.qfrc_applied, clamped to `VALVE_MAX_TORQUE_NM`) drives it to its goal; torque off
leaves it free. The optional guide motor (60) has no joint: it follows its goal at a bounded speed.
A stuck motor's joint is pinned where it was after every physics step.
"""

from __future__ import annotations

import mujoco
import numpy as np

from dclaw import hardware as hw
from dclaw import task
from sim.assets import model_path

VALVE_JOINT = "valve_OBJRx"
VALVE_KP = 2.0  # N·m/rad, as the claw's actuators
VALVE_KD = 0.1  # N·m·s/rad; with the joint's own damping (0.1) the valve is overdamped
VALVE_MAX_TORQUE_NM = 3.0  # XM430-W210 stall torque at 12 V
STUCK_GAIN = 20.0  # N·m/rad: how hard a jammed servo pushes (for its present current)
GUIDE_SPEED = 2.0  # rad/s


class EmulatedClaw:
    """The physics: nine claw joints, the valve and an optional guide, addressed by motor ID."""

    def __init__(self, calibration: dict[int, hw.MotorCalibration], guide: bool = False):
        self.model = mujoco.MjModel.from_xml_path(str(model_path()))
        self.data = mujoco.MjData(self.model)
        self.dt = float(self.model.opt.timestep)
        self.calibration = calibration
        self._joint = {motor: j for j, motor in enumerate(hw.CLAW_IDS)}
        self._gain = self.model.actuator_gainprm[:, 0].copy()
        self._bias = self.model.actuator_biasprm[:, :3].copy()
        valve = self.model.joint(VALVE_JOINT)
        self._vq, self._vd = int(valve.qposadr[0]), int(valve.dofadr[0])
        # (qpos, dof) addresses of each motor's joint, to pin a jammed one.
        self._address = {motor: (int(self.model.jnt_qposadr[j]), int(self.model.jnt_dofadr[j]))
                         for motor, j in self._joint.items()}
        self._address[hw.VALVE_ID] = (self._vq, self._vd)
        self.motor_ids = (*hw.CLAW_IDS, hw.VALVE_ID, *((hw.GUIDE_ID,) if guide else ()))
        self.valve_torque, self.valve_goal, self.valve_drive = False, 0.0, 0.0
        self.guide_torque, self.guide_angle, self.guide_goal, self.guide_speed = \
            False, 0.0, 0.0, 0.0
        self.stuck: dict[int, float] = {}  # motor -> the angle it is jammed at
        self.goal = dict.fromkeys(self.motor_ids, 0.0)
        self.data.qpos[: task.N_JOINTS] = task.RESET_POSE
        self.data.ctrl[: task.N_JOINTS] = task.RESET_POSE
        for motor in self.motor_ids:
            self.set_torque(motor, False)
        mujoco.mj_forward(self.model, self.data)

    # -- commands ----------------------------------------------------------------------------
    def set_torque(self, motor: int, on: bool) -> None:
        if motor in self._joint:
            j = self._joint[motor]
            self.model.actuator_gainprm[j, 0] = self._gain[j] if on else 0.0
            self.model.actuator_biasprm[j, :3] = self._bias[j] if on else 0.0
        elif motor == hw.VALVE_ID:
            self.valve_torque = on
            if not on:
                self.data.qfrc_applied[self._vd] = self.valve_drive = 0.0
        else:
            self.guide_torque = on

    def set_goal(self, motor: int, angle: float) -> None:
        self.goal[motor] = angle
        if motor in self._joint:
            self.data.ctrl[self._joint[motor]] = angle  # the actuator's ctrlrange clamps it
        elif motor == hw.VALVE_ID:
            self.valve_goal = angle
        else:
            self.guide_goal = angle

    def set_stuck(self, motor: int, stuck: bool) -> None:
        """Jams a motor where it is now, or frees it."""
        if not stuck:
            self.stuck.pop(motor, None)
        elif motor not in self.stuck:
            self.stuck[motor] = self.reading(motor)[0]

    def _torque_on(self, motor: int) -> bool:
        j = self._joint.get(motor)
        if j is not None:
            return bool(self.model.actuator_gainprm[j, 0])
        return self.valve_torque if motor == hw.VALVE_ID else self.guide_torque

    # -- physics -----------------------------------------------------------------------------
    def step(self, n: int) -> None:
        m, d = self.model, self.data
        vq, vd = self._vq, self._vd
        pinned = [(*self._address[motor], angle) for motor, angle in self.stuck.items()
                  if motor in self._address]
        for _ in range(n):
            if self.valve_torque:
                drive = VALVE_KP * (self.valve_goal - d.qpos[vq]) - VALVE_KD * d.qvel[vd]
                self.valve_drive = min(VALVE_MAX_TORQUE_NM, max(-VALVE_MAX_TORQUE_NM, drive))
                d.qfrc_applied[vd] = self.valve_drive
            mujoco.mj_step(m, d)
            for qpos, dof, angle in pinned:
                d.qpos[qpos] = angle
                d.qvel[dof] = 0.0
        self.guide_speed = 0.0
        if self.guide_torque and hw.GUIDE_ID not in self.stuck:
            step = GUIDE_SPEED * self.dt * n
            delta = min(step, max(-step, self.guide_goal - self.guide_angle))
            self.guide_angle += delta
            self.guide_speed = delta / (self.dt * n)

    def reading(self, motor: int) -> tuple[float, float, float]:
        """(angle rad, velocity rad/s, output torque N·m) of a motor's joint."""
        if motor in self.stuck:
            pinned = self.stuck[motor]
            pushing = self._torque_on(motor)
            return pinned, 0.0, STUCK_GAIN * (self.goal[motor] - pinned) if pushing else 0.0
        d = self.data
        j = self._joint.get(motor)
        if j is not None:
            return float(d.qpos[j]), float(d.qvel[j]), float(d.actuator_force[j])
        if motor == hw.VALVE_ID:
            return float(d.qpos[self._vq]), float(d.qvel[self._vd]), self.valve_drive
        return self.guide_angle, self.guide_speed, 0.0

    def valve_angle(self) -> float:
        return float(self.data.qpos[self._vq])

    def joint_angles(self) -> np.ndarray:
        return self.data.qpos[: task.N_JOINTS].copy()
